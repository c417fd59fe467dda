import type { ChatMessage, GenerateRequest, SamplingParams } from '@switchyard/core';
import { badRequest } from './errors.js';
import { checkFields } from './request-fields.js';

export type Body = Record<string, unknown>;

export interface ParsedRequest {
  request: GenerateRequest;
  stream: boolean;
  includeUsage: boolean;
  /** Top alternatives to report per token, or undefined for no logprobs. */
  logprobs?: number;
  /** Notes on accepted-and-ignored fields, for the log and the response's `warnings`. */
  warnings: string[];
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
    if (typeof m.content === 'string') return { role: m.role, content: m.content };
    if (m.content === null || m.content === undefined) return { role: m.role, content: '' };
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
  return {
    request: { messages: normalized, sampling: { ...s, logprobs }, priority: priorityOf(body) },
    ...stream,
    logprobs,
    images,
    warnings,
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
  const s = sampling(body, ['max_tokens']);
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

/** SGLang's native `/generate` body: `text` or `input_ids`, `sampling_params`, `stream`. */
export function parseNativeGenerate(body: Body): {
  request: GenerateRequest;
  stream: boolean;
  images: string[];
} {
  const request: GenerateRequest = {};
  if (typeof body.text === 'string') request.prompt = body.text;
  else if (isIntList(body.input_ids) && body.input_ids.length > 0) request.promptIds = body.input_ids;
  else throw badRequest('give text (a string) or input_ids (a non-empty array of token ids)', 'text');
  const sp = body.sampling_params ?? {};
  if (typeof sp !== 'object' || Array.isArray(sp))
    throw badRequest('sampling_params must be an object', 'sampling_params');
  request.sampling = sampling(sp as Body, ['max_new_tokens']);
  const imageData = body.image_data;
  const images =
    imageData === undefined || imageData === null
      ? []
      : typeof imageData === 'string'
        ? [imageData]
        : imageData;
  if (!Array.isArray(images) || !images.every(isStr))
    throw badRequest('image_data must be a string or an array of strings', 'image_data');
  return { request, stream: optional(body, 'stream', isBool, 'a boolean') ?? false, images };
}
