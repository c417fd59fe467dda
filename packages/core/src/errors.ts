/**
 * An error meant for the user: its message says what was wrong and what to do. The CLI prints
 * the message alone (no stack); the server maps `kind` to an HTTP status.
 */
export class SwitchyardError extends Error {
  constructor(
    message: string,
    readonly kind:
      | 'invalid_request'
      | 'not_found'
      | 'model_load'
      | 'capacity'
      /** A budget is full for now (image work in flight); retrying later can succeed. */
      | 'overloaded'
      | 'internal' = 'invalid_request',
    readonly param?: string,
  ) {
    super(message);
    this.name = 'SwitchyardError';
  }
}

export function invalidParam(param: string, message: string): SwitchyardError {
  return new SwitchyardError(`${param}: ${message}`, 'invalid_request', param);
}
