import type { ChatMessage, GenerateRequest, SamplingParams } from '@switchyard/core';
import { badRequest } from './errors.js';
import { checkFields } from './request-fields.js';
import { parseChatRendering, parseNativeStructured, parseStructured } from './structured-requests.js';
import { parseTools, type ToolRequest, toolMessageFields } from './tool-calls.js';

export type Body = Record<string, unknown>;

export interface ParsedRequest {
  request: GenerateRequest;
  stream: boolean;
  includeUsage: boolean;
  /** Top alternatives to report per token, or undefined for no logprobs. */
  logprobs?: number;
  /** Notes on accepted-and-ignored fields, for the log and the response's `warnings`. */
  warnings: string[];
  /** Chat `tools` + `tool_choice`, when given. */
  tools?: ToolRequest;
}

/** The request body as an object, or a 400 naming what it was instead. */
export function asBody(body: unknown): Body {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw badRequest('the request body must be a JSON object');
  }
  return body as Body;
}

const optional = <T>(body: Body, key: string, check: (v: unknown) => v is T, what: string): T | undefined => {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (!check(v)) throw badRequest(`${key} must be ${what}`, key);
  return v;
};
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInt = (v: unknown): v is number => Number.isInteger(v);
const isStr = (v: unknown): v is string => typeof v === 'string';
const isStrList = (v: unknown): v is string | string[] =>
  typeof v === 'string' || (Array.isArray(v) && v.every(isStr));
const isIntList = (v: unknown): v is number[] => Array.isArray(v) && v.every(isInt);
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The request's `priority` (lower runs first under `--policy priority`). */
export function priorityOf(body: Body): number | undefined {
  return optional(body, 'priority', isInt, 'an integer (lower runs first under --policy priority)');
}

/** The sampling fields OpenAI and vLLM requests share, in the engine's names (ranges are checked there). */
function sampling(body: Body, maxTokensKeys: string[]): Partial<SamplingParams> {
  let maxTokens: number | undefined;
  for (const key of maxTokensKeys) maxTokens ??= optional(body, key, isInt, 'an integer');
  const stop = optional(body, 'stop', isStrList, 'a string or an array of strings');
  return {
    maxTokens,
    temperature: optional(body, 'temperature', isNum, 'a number'),
    topP: optional(body, 'top_p', isNum, 'a number'),
    topK: optional(body, 'top_k', isInt, 'an integer'),
    minP: optional(body, 'min_p', isNum, 'a number'),
    repetitionPenalty: optional(body, 'repetition_penalty', isNum, 'a number'),
    presencePenalty: optional(body, 'presence_penalty', isNum, 'a number'),
    frequencyPenalty: optional(body, 'frequency_penalty', isNum, 'a number'),
    seed: optional(body, 'seed', isInt, 'an integer'),
    n: optional(body, 'n', isInt, 'an integer'),
    stop: stop === undefined ? undefined : typeof stop === 'string' ? [stop] : stop,
    stopTokenIds: optional(body, 'stop_token_ids', isIntList, 'an array of integers'),
    ignoreEos: optional(body, 'ignore_eos', isBool, 'a boolean'),
    minTokens: optional(body, 'min_tokens', isInt, 'an integer'),
    logitBias: optional(body, 'logit_bias', isObject, 'an object mapping token ids to biases') as
      | Record<number, number>
      | undefined,
    promptLogprobs: optional(body, 'prompt_logprobs', isInt, 'an integer'),
  };
}

function streamOptions(body: Body): { stream: boolean; includeUsage: boolean } {
  const stream = optional(body, 'stream', isBool, 'a boolean') ?? false;
  const opts = body.stream_options;
  if (opts !== undefined && opts !== null && (typeof opts !== 'object' || Array.isArray(opts))) {
    throw badRequest('stream_options must be an object', 'stream_options');
  }
  const includeUsage = (opts as Body | undefined)?.include_usage;
  if (includeUsage !== undefined && includeUsage !== null && typeof includeUsage !== 'boolean') {
    throw badRequest('stream_options.include_usage must be a boolean', 'stream_options');
  }
  return { stream, includeUsage: includeUsage === true };
}

/** A `/v1/chat/completions` body. Image parts are counted and returned for the caller to load. */
export function parseChat(body: Body, maxImages: number): ParsedRequest & { images: string[] } {
  const warnings = checkFields(body, 'chat');
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) {
    throw badRequest('messages must be a non-empty array of {role, content} objects', 'messages');
  }
  const images: string[] = [];
  const normalized: ChatMessage[] = messages.map((m, i) => {
    if (!m || typeof m !== 'object' || typeof m.role !== 'string') {
      throw badRequest(`messages[${i}] must be an object with a string role`, 'messages');
    }
    if (typeof m.content === 'string')
      return { role: m.role, content: m.content, ...toolMessageFields(m, i) };
    if (m.content === null || m.content === undefined)
      return { role: m.role, content: '', ...toolMessageFields(m, i) };
    if (!Array.isArray(m.content))
      throw badRequest(`messages[${i}].content must be a string or an array of parts`, 'messages');
    return {
      role: m.role,
      content: m.content.map((p: unknown, j: number) => {
        const part = p as { type?: unknown; text?: unknown; image_url?: { url?: unknown } | string };
        if (part?.type === 'text' && typeof part.text === 'string')
          return { type: 'text' as const, text: part.text };
        if (part?.type === 'image_url') {
          const url = typeof part.image_url === 'string' ? part.image_url : part.image_url?.url;
          if (typeof url !== 'string')
            throw badRequest(`messages[${i}].content[${j}].image_url.url must be a string`, 'messages');
          images.push(url);
          return { type: 'image_url' as const, image_url: { url } };
        }
        throw badRequest(`messages[${i}].content[${j}] must be a text or image_url part`, 'messages');
      }),
    };
  });
  if (images.length > maxImages) {
    throw badRequest(
      `the request has ${images.length} images; at most ${maxImages} are accepted per request`,
      'messages',
    );
  }
  const wantLogprobs = optional(body, 'logprobs', isBool, 'a boolean') ?? false;
  const top = optional(body, 'top_logprobs', isInt, 'an integer');
  if (top !== undefined && !wantLogprobs)
    throw badRequest('top_logprobs needs logprobs: true', 'top_logprobs');
  const logprobs = wantLogprobs ? (top ?? 0) : undefined;
  const s = sampling(body, ['max_completion_tokens', 'max_tokens']);
  const stream = streamOptions(body);
  if (stream.stream && s.promptLogprobs !== undefined)
    throw badRequest('prompt_logprobs is not supported with stream: true', 'prompt_logprobs');
  // Extra variables for the chat template (vLLM's chat_template_kwargs, e.g. enable_thinking).
  const kwargs = optional(body, 'chat_template_kwargs', isObject, 'an object of chat template variables');
  return {
    request: {
      messages: normalized,
      ...parseChatRendering(body),
      ...(kwargs ? { chatTemplateKwargs: kwargs } : {}),
      sampling: { ...s, ...parseStructured(body), logprobs },
      priority: priorityOf(body),
    },
    ...stream,
    logprobs,
    images,
    warnings,
    tools: parseTools(body),
  };
}

/** A parsed `/v1/completions` body: one engine request per prompt of the batch. */
export interface ParsedCompletion {
  requests: GenerateRequest[];
  /** Each prompt as text (token-id prompts decoded by the caller): what `echo` puts first. */
  prompts: (string | number[])[];
  echo: boolean;
  stream: boolean;
  includeUsage: boolean;
  logprobs?: number;
  warnings: string[];
}

/**
 * A `/v1/completions` body. `prompt` is a string, an array of token ids, or a batch: an array
 * of strings or of token-id arrays (each a request of its own; choice i × n + j answers prompt i).
 */
export function parseCompletion(body: Body): ParsedCompletion {
  const warnings = checkFields(body, 'completion');
  const prompt = body.prompt;
  let prompts: (string | number[])[];
  if (typeof prompt === 'string') prompts = [prompt];
  else if (isIntList(prompt) && prompt.length > 0) prompts = [prompt];
  else if (
    Array.isArray(prompt) &&
    prompt.length > 0 &&
    prompt.every((p) => typeof p === 'string' || (isIntList(p) && p.length > 0))
  )
    prompts = prompt as (string | number[])[];
  else
    throw badRequest(
      'prompt must be a string, a non-empty array of token ids, or a non-empty array of either (a batch)',
      'prompt',
    );
  const logprobs = optional(body, 'logprobs', isInt, 'an integer');
  const echo = optional(body, 'echo', isBool, 'a boolean') ?? false;
  const s = { ...sampling(body, ['max_tokens']), ...parseStructured(body) };
  const stream = streamOptions(body);
  if (stream.stream && s.promptLogprobs !== undefined)
    throw badRequest('prompt_logprobs is not supported with stream: true', 'prompt_logprobs');
  if (stream.stream && echo && logprobs !== undefined)
    throw badRequest(
      'echo with logprobs is not supported with stream: true; drop stream or logprobs',
      'echo',
    );
  // echo with logprobs reports the prompt's own logprobs, as vLLM does.
  const promptLogprobs = s.promptLogprobs ?? (echo && logprobs !== undefined ? logprobs : undefined);
  const priority = priorityOf(body);
  const requests = prompts.map(
    (p): GenerateRequest => ({
      ...(typeof p === 'string' ? { prompt: p } : { promptIds: p }),
      sampling: { ...s, logprobs, promptLogprobs },
      priority,
    }),
  );
  return { requests, prompts, echo, ...stream, logprobs, warnings };
}

/** SGLang `sampling_params` keys, and the LightLLM `parameters` keys (others get a 400 naming them). */
const SGLANG_SAMPLING = new Set([
  'max_new_tokens',
  'min_new_tokens',
  'temperature',
  'top_p',
  'top_k',
  'min_p',
  'repetition_penalty',
  'presence_penalty',
  'frequency_penalty',
  'stop',
  'stop_token_ids',
  'ignore_eos',
  'n',
  'seed',
  'sampling_seed',
  'logit_bias',
  'skip_special_tokens',
  'json_schema',
  'regex',
  'ebnf',
  'jump_forward',
]);

/** Refuses keys outside `known` (400 naming the key and where it was). */
export function checkKeys(obj: Body, known: Set<string>, where: string): void {
  for (const key of Object.keys(obj)) {
    if (known.has(key)) continue;
    throw badRequest(`${where} has an unknown key '${key}'; known: ${[...known].join(', ')}`, key);
  }
}

/** Images given as URLs, data: URLs or raw base64 (SGLang and LightLLM accept bare base64). */
export function imageSource(s: string): string {
  // JPEG's base64 starts with '/9j/', so a leading '/' alone does not make a path.
  const base64 = s.length >= 64 && /^[A-Za-z0-9+/]+={0,2}$/.test(s);
  if (!base64 && /^(data:|https?:|file:|\/)/i.test(s)) return s;
  return base64 ? `data:image/base64;base64,${s}` : s;
}

const SGLANG_TOP = new Set([
  'text',
  'input_ids',
  'sampling_params',
  'stream',
  'image_data',
  'return_logprob',
  'logprob_start_len',
  'top_logprobs_num',
  'return_text_in_logprobs',
  'rid',
  'priority',
  'modalities',
]);

export interface ParsedNativeGenerate {
  /** One request per prompt; `batched` says whether the body sent a list. */
  requests: GenerateRequest[];
  batched: boolean;
  stream: boolean;
  /** Per request, its images (URL, data URL or raw base64 normalized to a data URL). */
  images: string[][];
  returnLogprob: boolean;
  returnTextInLogprobs: boolean;
  topLogprobsNum: number;
}

/**
 * SGLang's native `/generate` body: `text` or `input_ids` (one prompt or a list of them),
 * `sampling_params`, `image_data` (URL, data URL or raw base64; per prompt when batched),
 * `return_logprob` with `top_logprobs_num`, `stream`, `priority`.
 */
export function parseNativeGenerate(body: Body): ParsedNativeGenerate {
  checkKeys(body, SGLANG_TOP, 'the /generate body');
  let prompts: (string | number[])[];
  let batched = false;
  if (typeof body.text === 'string') prompts = [body.text];
  else if (Array.isArray(body.text) && body.text.length > 0 && body.text.every(isStr)) {
    prompts = body.text;
    batched = true;
  } else if (isIntList(body.input_ids) && body.input_ids.length > 0) prompts = [body.input_ids];
  else if (
    Array.isArray(body.input_ids) &&
    body.input_ids.length > 0 &&
    body.input_ids.every((x) => isIntList(x) && x.length > 0)
  ) {
    prompts = body.input_ids as number[][];
    batched = true;
  } else
    throw badRequest(
      'give text (a string or a list of strings) or input_ids (token ids, or a list of such lists)',
      'text',
    );
  const sp = body.sampling_params ?? {};
  if (typeof sp !== 'object' || Array.isArray(sp))
    throw badRequest('sampling_params must be an object', 'sampling_params');
  checkKeys(sp as Body, SGLANG_SAMPLING, 'sampling_params');
  const s = { ...sampling(sp as Body, ['max_new_tokens']), ...parseNativeStructured(sp as Body) };
  s.seed ??= optional(sp as Body, 'sampling_seed', isInt, 'an integer');
  if ((sp as Body).skip_special_tokens === false)
    throw badRequest('skip_special_tokens: false is not supported', 'skip_special_tokens');
  const returnLogprob = optional(body, 'return_logprob', isBool, 'a boolean') ?? false;
  const topLogprobsNum = optional(body, 'top_logprobs_num', isInt, 'an integer') ?? 0;
  const startLen = optional(body, 'logprob_start_len', isInt, 'an integer') ?? -1;
  const imageData = body.image_data;
  let images: string[][];
  if (imageData === undefined || imageData === null) images = prompts.map(() => []);
  else if (typeof imageData === 'string') images = [[imageData]];
  else if (Array.isArray(imageData) && imageData.every(isStr))
    images = batched ? imageData.map((x) => [x]) : [imageData];
  else if (Array.isArray(imageData) && imageData.every((x) => Array.isArray(x) && x.every(isStr)))
    images = imageData as string[][];
  else
    throw badRequest('image_data must be a string, a list of strings, or one list per prompt', 'image_data');
  if (images.length !== prompts.length)
    throw badRequest(`image_data has ${images.length} entries for ${prompts.length} prompts`, 'image_data');
  const priority = priorityOf(body);
  const requests = prompts.map(
    (p): GenerateRequest => ({
      ...(typeof p === 'string' ? { prompt: p } : { promptIds: p }),
      sampling: {
        ...s,
        logprobs: returnLogprob ? topLogprobsNum : undefined,
        promptLogprobs: returnLogprob && startLen >= 0 ? topLogprobsNum : undefined,
      },
      priority,
    }),
  );
  return {
    requests,
    batched,
    stream: optional(body, 'stream', isBool, 'a boolean') ?? false,
    images: images.map((list) => list.map(imageSource)),
    returnLogprob,
    returnTextInLogprobs: optional(body, 'return_text_in_logprobs', isBool, 'a boolean') ?? false,
    topLogprobsNum,
  };
}

const LIGHTLLM_PARAMETERS = new Set([
  'do_sample',
  'temperature',
  'top_p',
  'top_k',
  'min_p',
  'repetition_penalty',
  'presence_penalty',
  'frequency_penalty',
  'max_new_tokens',
  'min_new_tokens',
  'stop_sequences',
  'ignore_eos',
  'seed',
  'n',
  'best_of',
  'skip_special_tokens',
  'return_details',
  'add_special_tokens',
  'logit_bias',
]);

export interface ParsedLightllm {
  request: GenerateRequest;
  stream: boolean;
  /** Image sources in order (one per `<img></img>` in `inputs`). */
  images: string[];
  returnDetails: boolean;
}

/**
 * LightLLM's `/generate` (and `/generate_stream`) body: `inputs` (text with `<img></img>` where
 * each image goes), `parameters` (`do_sample: false`, the default, is greedy), and
 * `multimodal_params.images` as `[{type: "base64"|"url", data}]`.
 */
export function parseLightllm(body: Body, stream: boolean): ParsedLightllm {
  checkKeys(
    body,
    new Set(['inputs', 'parameters', 'multimodal_params', 'stream', 'priority']),
    'the LightLLM body',
  );
  if (typeof body.inputs !== 'string' || body.inputs === '')
    throw badRequest('inputs must be a non-empty string', 'inputs');
  const p = body.parameters ?? {};
  if (typeof p !== 'object' || Array.isArray(p))
    throw badRequest('parameters must be an object', 'parameters');
  const params = p as Body;
  checkKeys(params, LIGHTLLM_PARAMETERS, 'parameters');
  if (params.add_special_tokens === false)
    throw badRequest(
      'add_special_tokens: false is not supported; the tokenizer adds them as the model expects',
      'add_special_tokens',
    );
  if (params.skip_special_tokens === false)
    throw badRequest('skip_special_tokens: false is not supported', 'skip_special_tokens');
  const doSample = optional(params, 'do_sample', isBool, 'a boolean') ?? false;
  const s = sampling({ ...params, stop: params.stop_sequences }, ['max_new_tokens']);
  s.minTokens ??= optional(params, 'min_new_tokens', isInt, 'an integer');
  const bestOf = optional(params, 'best_of', isInt, 'an integer');
  if (bestOf !== undefined && bestOf !== (s.n ?? 1))
    throw badRequest('best_of other than n is not supported; ask for n samples', 'best_of');
  // LightLLM: without do_sample the answer is greedy whatever temperature says.
  if (!doSample) {
    s.temperature = 0;
    s.topP = undefined;
    s.topK = undefined;
  }
  const mm = body.multimodal_params ?? {};
  if (typeof mm !== 'object' || Array.isArray(mm))
    throw badRequest('multimodal_params must be an object', 'multimodal_params');
  checkKeys(mm as Body, new Set(['images']), 'multimodal_params');
  const list = (mm as Body).images ?? [];
  if (!Array.isArray(list)) throw badRequest('multimodal_params.images must be a list', 'multimodal_params');
  const images = list.map((img: unknown, i: number) => {
    const o = img as { type?: unknown; data?: unknown };
    if (
      !o ||
      typeof o !== 'object' ||
      typeof o.data !== 'string' ||
      (o.type !== 'base64' && o.type !== 'url')
    )
      throw badRequest(
        `multimodal_params.images[${i}] must be {"type": "base64" | "url", "data": string}`,
        'multimodal_params',
      );
    if (o.type === 'url') return o.data;
    return o.data.startsWith('data:') ? o.data : `data:image/base64;base64,${o.data}`;
  });
  return {
    request: { prompt: body.inputs, sampling: s, priority: priorityOf(body) },
    stream: stream || (optional(body, 'stream', isBool, 'a boolean') ?? false),
    images,
    returnDetails: optional(params, 'return_details', isBool, 'a boolean') ?? false,
  };
}
