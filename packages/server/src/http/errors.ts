import { SwitchyardError } from '@switchyard/core';

/** An error answered with an HTTP status in the OpenAI `{"error": {...}}` shape. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Retry-After on 429 and 503). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string, param: string | null = null) =>
  new HttpError(400, message, 'invalid_request_error', param, 'invalid_value');

/** Maps any thrown value to the HttpError it is answered with. */
export function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof SwitchyardError) {
    switch (e.kind) {
      case 'invalid_request':
        return new HttpError(400, e.message, 'invalid_request_error', e.param ?? null, 'invalid_value');
      case 'not_found':
        return new HttpError(404, e.message, 'not_found_error', e.param ?? null, 'not_found');
      case 'capacity':
        return new HttpError(503, e.message, 'service_unavailable', null, 'capacity', {
          'retry-after': '1',
        });
      case 'overloaded':
        return new HttpError(429, e.message, 'rate_limit_error', e.param ?? null, 'overloaded', {
          'retry-after': '1',
        });
      default:
        return new HttpError(500, e.message, 'internal_error', null, 'internal_error');
    }
  }
  const fastifyCode = (e as { code?: string; statusCode?: number }).code;
  const status = (e as { statusCode?: number }).statusCode;
  if (fastifyCode === 'FST_ERR_CTP_BODY_TOO_LARGE' || status === 413) {
    return new HttpError(
      413,
      'the request body is larger than the server accepts; send smaller images or fewer of them',
      'invalid_request_error',
      null,
      'body_too_large',
    );
  }
  if (status && status >= 400 && status < 500) {
    return new HttpError(status, (e as Error).message, 'invalid_request_error', null, 'invalid_request');
  }
  return new HttpError(
    500,
    `internal error: ${(e as Error).message}`,
    'internal_error',
    null,
    'internal_error',
  );
}

export function errorBody(e: HttpError) {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}
