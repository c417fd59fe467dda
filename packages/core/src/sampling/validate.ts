import { invalidParam } from '../errors.js';
import { DEFAULT_SAMPLING, type GuidedSpec, type SamplingParams } from '../sampling-params.js';

export interface SamplingLimits {
  maxModelLen: number;
  promptLen: number;
  vocabSize: number;
}

const MAX_STOP = 16;
const int = Number.isInteger;
const show = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : String(v));

/** Numeric settings: [OpenAI name, check, what a valid value is]. */
const NUMERIC: [keyof SamplingParams, string, (v: number) => boolean, string][] = [
  ['temperature', 'temperature', (v) => v >= 0 && v <= 100, 'a number from 0 to 100 (0 means greedy)'],
  ['topP', 'top_p', (v) => v > 0 && v <= 1, 'a number in (0, 1]'],
  ['topK', 'top_k', (v) => int(v) && v >= -1, 'an integer >= 1, or -1 or 0 to disable it'],
  ['minP', 'min_p', (v) => v >= 0 && v <= 1, 'a number from 0 to 1'],
  ['repetitionPenalty', 'repetition_penalty', (v) => v > 0 && v <= 100, 'a number in (0, 100] (1: off)'],
  ['presencePenalty', 'presence_penalty', (v) => v >= -2 && v <= 2, 'a number from -2 to 2'],
  ['frequencyPenalty', 'frequency_penalty', (v) => v >= -2 && v <= 2, 'a number from -2 to 2'],
  ['n', 'n', (v) => int(v) && v >= 1 && v <= 128, 'an integer from 1 to 128'],
  ['maxTokens', 'max_tokens', (v) => int(v) && v >= 1, 'an integer >= 1'],
  ['logprobs', 'logprobs', (v) => int(v) && v >= 0 && v <= 20, 'an integer from 0 to 20'],
  ['promptLogprobs', 'prompt_logprobs', (v) => int(v) && v >= 0 && v <= 20, 'an integer from 0 to 20'],
  ['seed', 'seed', int, 'an integer'],
  ['minTokens', 'min_tokens', (v) => int(v) && v >= 0, 'an integer >= 0'],
];
/** Every key `SamplingParams` takes (the defaults' keys and the optional ones). */
export const SAMPLING_KEYS: readonly string[] = [
  ...Object.keys(DEFAULT_SAMPLING),
  'seed',
  'logprobs',
  'logitBias',
  'promptLogprobs',
  // Structured output's keys (guided decoding), validated where they are implemented.
  'guided',
  'jumpForward',
];
const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
/** Request-API spellings whose code-API name is not just the camelCase form. */
const RENAMED: Record<string, string> = {
  max_new_tokens: 'maxTokens',
  max_completion_tokens: 'maxTokens',
  min_new_tokens: 'minTokens',
  stop_sequences: 'stop',
};

/**
 * Throws on a key `SamplingParams` does not have, saying what to use instead: the code API
 * takes camelCase (`maxTokens`, not vLLM's `max_tokens`), so a snake_case key is never dropped.
 */
export function checkSamplingKeys(input: object): void {
  for (const key of Object.keys(input)) {
    if (SAMPLING_KEYS.includes(key) || (input as Record<string, unknown>)[key] === undefined) continue;
    const hint = RENAMED[key] ?? camel(key);
    throw invalidParam(
      key,
      SAMPLING_KEYS.includes(hint)
        ? `is not a sampling key of the code API; use ${hint}`
        : `is not a sampling key; known: ${SAMPLING_KEYS.join(', ')}`,
    );
  }
}

/**
 * Checks a request's sampling settings against the model and fills the defaults. Throws
 * `invalidParam` naming the parameter as the OpenAI API spells it. Unknown keys are refused
 * (`checkSamplingKeys`); null values are ignored. Normalizes as vLLM does: temperature below 1e-5 becomes 0 (greedy), top_k -1 becomes
 * 0 (disabled), a lone stop string becomes a one-entry list.
 */
export function validateSamplingParams(
  input: Partial<SamplingParams> & Record<string, unknown>,
  limits: SamplingLimits,
): SamplingParams {
  const { maxModelLen, promptLen, vocabSize } = limits;
  checkSamplingKeys(input);
  const out: SamplingParams = { ...DEFAULT_SAMPLING, stop: [], stopTokenIds: [] };
  const set = out as unknown as Record<string, number>;
  for (const [key, name, ok, rule] of NUMERIC) {
    const v: unknown = input[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v))
      throw invalidParam(name, `must be ${rule}, got ${show(v)}`);
    set[key] = v;
  }
  if (out.temperature < 1e-5) out.temperature = 0;
  if (out.topK < 0) out.topK = 0;

  const room = maxModelLen - promptLen;
  if (input.maxTokens === undefined || input.maxTokens === null) {
    if (room < 1) {
      throw invalidParam(
        'max_tokens',
        `the prompt has ${promptLen} tokens, which leaves no room to generate within the model's context length of ${maxModelLen}; shorten the prompt`,
      );
    }
    // vLLM's default: whatever the context leaves.
    out.maxTokens = room;
  } else if (promptLen + out.maxTokens > maxModelLen) {
    const fix =
      room >= 1 ? `lower max_tokens to at most ${room} or shorten the prompt` : 'shorten the prompt';
    throw invalidParam(
      'max_tokens',
      `${out.maxTokens} plus the prompt's ${promptLen} tokens exceeds the model's context length of ${maxModelLen}; ${fix}`,
    );
  }

  const stop: unknown = input.stop;
  if (typeof stop === 'string') out.stop = [stop];
  else if (stop !== undefined && stop !== null) {
    if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string')) {
      throw invalidParam('stop', 'must be a string or an array of strings');
    }
    out.stop = [...stop];
  }
  if (out.stop.length > MAX_STOP)
    throw invalidParam('stop', `at most ${MAX_STOP} stop strings, got ${out.stop.length}`);
  if (out.stop.some((s) => s.length === 0)) throw invalidParam('stop', 'stop strings must not be empty');

  const ids: unknown = input.stopTokenIds;
  if (ids !== undefined && ids !== null) {
    if (!Array.isArray(ids)) throw invalidParam('stop_token_ids', 'must be an array of token ids');
    const bad = ids.findIndex((t) => !int(t) || t < 0 || t >= vocabSize);
    if (bad >= 0)
      throw invalidParam('stop_token_ids', `${show(ids[bad])} is not a token id (0 to ${vocabSize - 1})`);
    out.stopTokenIds = [...ids];
  }

  const eos: unknown = input.ignoreEos;
  if (eos !== undefined && eos !== null) {
    if (typeof eos !== 'boolean') throw invalidParam('ignore_eos', `must be true or false, got ${show(eos)}`);
    out.ignoreEos = eos;
  }
  if (out.minTokens > out.maxTokens)
    throw invalidParam('min_tokens', `must be at most max_tokens (${out.maxTokens}), got ${out.minTokens}`);

  const bias: unknown = input.logitBias;
  if (bias !== undefined && bias !== null) {
    if (typeof bias !== 'object' || Array.isArray(bias))
      throw invalidParam('logit_bias', 'must be an object mapping token ids to numbers from -100 to 100');
    const entries = Object.entries(bias as Record<string, unknown>);
    if (entries.length > MAX_LOGIT_BIAS)
      throw invalidParam('logit_bias', `at most ${MAX_LOGIT_BIAS} entries, got ${entries.length}`);
    if (entries.length > 0) out.logitBias = {};
    for (const [k, v] of entries) {
      // A token id as JSON object keys spell it: decimal digits only (not "1e2", " 5" or "-0").
      const id = /^\d+$/.test(k) ? Number(k) : Number.NaN;
      if (!int(id) || id < 0 || id >= vocabSize)
        throw invalidParam('logit_bias', `${show(k)} is not a token id (0 to ${vocabSize - 1})`);
      if (typeof v !== 'number' || !Number.isFinite(v) || v < -100 || v > 100)
        throw invalidParam(
          'logit_bias',
          `the bias of token ${k} must be a number from -100 to 100, got ${show(v)}`,
        );
      (out.logitBias as Record<number, number>)[id] = v;
    }
  }

  const jf: unknown = input.jumpForward;
  if (jf !== undefined && jf !== null) {
    if (typeof jf !== 'boolean') throw invalidParam('jump_forward', `must be true or false, got ${show(jf)}`);
    out.jumpForward = jf;
  }
  if (input.guided !== undefined && input.guided !== null) out.guided = validateGuidedSpec(input.guided);
  return out;
}

const MAX_LOGIT_BIAS = 1024;
const MAX_CHOICES = 1024;
const MAX_GRAMMAR_CHARS = 256 * 1024;

/** Checks the shape of a guided-decoding spec (compiling it is the grammar compiler's job). */
export function validateGuidedSpec(spec: unknown): GuidedSpec {
  const g = spec as Record<string, unknown>;
  const param = typeof g?.param === 'string' ? g.param : 'guided';
  const fail = (why: string) => invalidParam(param, why);
  if (!g || typeof g !== 'object' || Array.isArray(g)) throw fail('must be an object with a type');
  const text = (key: string, what: string): string => {
    const v = g[key];
    if (typeof v !== 'string' || v.length === 0) throw fail(`${what} must be a non-empty string`);
    if (v.length > MAX_GRAMMAR_CHARS) throw fail(`${what} is longer than ${MAX_GRAMMAR_CHARS} characters`);
    return v;
  };
  switch (g.type) {
    case 'json_schema': {
      const s = g.schema;
      const ok =
        typeof s === 'boolean' ||
        typeof s === 'string' ||
        (!!s && typeof s === 'object' && !Array.isArray(s));
      if (!ok) throw fail('the JSON schema must be an object');
      if (JSON.stringify(s).length > MAX_GRAMMAR_CHARS)
        throw fail(`the JSON schema is longer than ${MAX_GRAMMAR_CHARS} characters`);
      if (g.strict !== undefined && typeof g.strict !== 'boolean') throw fail('strict must be a boolean');
      for (const k of ['prefix', 'suffix'])
        if (g[k] !== undefined && typeof g[k] !== 'string') throw fail(`${k} must be a string`);
      return {
        type: 'json_schema',
        schema: s as Record<string, unknown>,
        strict: g.strict as boolean | undefined,
        ...(g.prefix !== undefined ? { prefix: g.prefix as string } : {}),
        ...(g.suffix !== undefined ? { suffix: g.suffix as string } : {}),
        param,
      };
    }
    case 'json_object':
    case 'json':
      return { type: g.type, param };
    case 'regex':
      return { type: 'regex', pattern: text('pattern', 'the regular expression'), param };
    case 'grammar':
      return { type: 'grammar', grammar: text('grammar', 'the grammar'), param };
    case 'choice': {
      const c = g.choices;
      if (!Array.isArray(c) || c.length === 0 || c.some((x) => typeof x !== 'string' || x.length === 0))
        throw fail('the choices must be a non-empty array of non-empty strings');
      if (c.length > MAX_CHOICES) throw fail(`at most ${MAX_CHOICES} choices, got ${c.length}`);
      return { type: 'choice', choices: [...c], param };
    }
    case 'structural_tag': {
      const t = g.tag;
      if (!t || typeof t !== 'object' || Array.isArray(t)) throw fail('the structural tag must be an object');
      return { type: 'structural_tag', tag: t as Record<string, unknown>, param };
    }
    default:
      throw fail(
        `unknown guided decoding type ${show(g.type)}; known: json_schema, json_object, json, regex, grammar, choice, structural_tag`,
      );
  }
}
