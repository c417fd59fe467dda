import { HttpError } from './errors.js';
import type { Body } from './openai-requests.js';

/**
 * What the OpenAI-compatible routes do with each request field (docs/CLI.md lists it):
 * - known: implemented here;
 * - elsewhere: parsed by the structured-output code (response_format, tools, guided_*);
 * - ignored: accepted, as vLLM accepts them, with a warning in the log and in `warnings`;
 * - refused: 400 with what to do instead;
 * - anything else: 400 naming the field, as OpenAI answers an unknown argument.
 */
const SHARED = [
  'model',
  'stream',
  'stream_options',
  'temperature',
  'top_p',
  'top_k',
  'min_p',
  'max_tokens',
  'n',
  'stop',
  'stop_token_ids',
  'seed',
  'presence_penalty',
  'frequency_penalty',
  'repetition_penalty',
  'logprobs',
  'logit_bias',
  'min_tokens',
  'ignore_eos',
  'prompt_logprobs',
  'priority',
];
export const KNOWN_FIELDS = {
  chat: new Set([...SHARED, 'messages', 'max_completion_tokens', 'top_logprobs']),
  completion: new Set([...SHARED, 'prompt', 'echo']),
};
export const ELSEWHERE_FIELDS = new Set([
  'response_format',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'guided_json',
  'guided_regex',
  'guided_choice',
  'guided_grammar',
  // The structured-output branch's chat-rendering and decoding options.
  'continue_final_message',
  'add_generation_prompt',
  'chat_template_kwargs',
  'jump_forward',
]);
export const IGNORED_FIELDS: Record<string, string> = {
  user: 'an end-user id for abuse monitoring; not used here',
  store: 'nothing is stored here',
  metadata: 'nothing is stored here',
  service_tier: 'there is one service tier',
  skip_special_tokens: 'special tokens are always left out of the text',
  guided_decoding_backend: 'XGrammar is the one guided-decoding backend here',
};
export const REFUSED_FIELDS: Record<string, string> = {
  suffix:
    'suffix is not supported: the served models have no fill-in-the-middle mode; send the text before the gap as prompt',
  best_of: 'best_of is not supported; ask for n completions (with logprobs to rank them yourself)',
  functions: 'functions is the deprecated form of tools; send tools',
  function_call: 'function_call is the deprecated form of tool_choice; send tool_choice',
  audio: 'audio output is not supported',
  modalities: 'only text output is supported; leave modalities out',
  prediction: 'predicted outputs are not supported',
  web_search_options: 'web search is not supported',
  include_stop_str_in_output: 'include_stop_str_in_output is not supported; append stop_reason yourself',
};

/**
 * Checks a body's fields for `kind`; returns the warnings for accepted-and-ignored ones. Throws
 * a 400 naming the first unknown or refused field. `best_of` equal to n (or 1) is accepted, as
 * it changes nothing.
 */
export function checkFields(body: Body, kind: keyof typeof KNOWN_FIELDS): string[] {
  const warnings: string[] = [];
  for (const key of Object.keys(body)) {
    if (KNOWN_FIELDS[kind].has(key) || ELSEWHERE_FIELDS.has(key)) continue;
    const value = body[key];
    if (key === 'best_of' && (value === null || value === 1 || value === (body.n ?? 1))) continue;
    if (key === 'skip_special_tokens' && value === false) {
      throw refusal(key, 'skip_special_tokens: false is not supported; special tokens are always left out');
    }
    if (key in IGNORED_FIELDS) {
      warnings.push(`${key} is accepted and ignored: ${IGNORED_FIELDS[key]}`);
      continue;
    }
    if (key in REFUSED_FIELDS) throw refusal(key, REFUSED_FIELDS[key]);
    throw new HttpError(
      400,
      `Unrecognized request argument supplied: ${key}`,
      'invalid_request_error',
      key,
      'unknown_parameter',
    );
  }
  return warnings;
}

const refusal = (param: string, message: string) =>
  new HttpError(400, message, 'invalid_request_error', param, 'unsupported_parameter');
