import { SwitchyardError } from '../errors.js';
import { SAMPLING_KEYS } from '../sampling/validate.js';

/** Every key `GenerateRequest` takes. */
export const REQUEST_KEYS: readonly string[] = [
  'id',
  'prompt',
  'promptIds',
  'messages',
  'images',
  'sampling',
  'priority',
  'cacheSalt',
  // Structured output's chat-rendering options, validated where they are implemented.
  'chatTemplateKwargs',
  'continueFinalMessage',
];
const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * Throws on a `GenerateRequest` key the engine does not know, saying where it belongs: a
 * snake_case spelling gets its camelCase name, a sampling setting at the top level is sent into
 * `sampling` (so `{ max_tokens: 64 }` is an error, never 16 silent tokens).
 */
export function checkRequestKeys(req: object): void {
  for (const [key, value] of Object.entries(req)) {
    if (REQUEST_KEYS.includes(key) || value === undefined) continue;
    const name = camel(key === 'max_new_tokens' || key === 'max_completion_tokens' ? 'max_tokens' : key);
    let hint = `known keys: ${REQUEST_KEYS.join(', ')}`;
    if (REQUEST_KEYS.includes(name)) hint = `use ${name}`;
    else if (SAMPLING_KEYS.includes(name)) hint = `sampling settings go in sampling: { ${name}: … }`;
    throw new SwitchyardError(`${key} is not a GenerateRequest key; ${hint}`, 'invalid_request', key);
  }
}
