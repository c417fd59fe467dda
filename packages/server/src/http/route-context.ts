import type { Engine, GenerateRequest, GenerateResult, StreamEvent } from '@switchyard/core';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** Per-response data the answer shapes read (ids, fingerprint, the batch's results). */
export interface Meta {
  id: string;
  created: number;
  model: string;
  engine: Engine;
  /** `system_fingerprint`. */
  fingerprint: string;
  /** Accepted-and-ignored fields, reported in the body (or the first chunk). */
  warnings: string[];
  /** `echo`: each request's prompt text, put before its completions. */
  echo?: string[];
  /** Each request's result, in request order, once all are done. */
  results: GenerateResult[];
  /** Completions per request. */
  n: number;
}

/** How a route's server-sent events are framed. */
export interface Framing {
  /** Before each JSON event: 'data: ' (OpenAI, SGLang) or 'data:' (LightLLM). */
  prefix: string;
  /** Whether the stream ends with `data: [DONE]` (LightLLM's does not). */
  done: boolean;
}

export interface RespondOptions {
  route: string;
  warnings?: string[];
  echo?: string[];
  framing?: Framing;
}

/** What a route file needs from the server: admission, images, and the engine driver. */
export interface RouteContext {
  engine: Engine;
  modelName: string;
  maxImages: number;
  /** Key, drain state; throws the HTTP error. */
  admit(req: FastifyRequest): void;
  /** Queue room; throws 429. */
  checkQueue(): void;
  /** Loads images (URLs, data URLs, raw base64) under the media policy into `request.images`. */
  loadImages(request: GenerateRequest, urls: string[], param: string): Promise<void>;
  /** Runs requests (a batch answered as one) as JSON or server-sent events. */
  respond(
    reply: FastifyReply,
    requests: GenerateRequest[],
    stream: boolean,
    toChunks: (events: AsyncIterable<StreamEvent>, meta: Meta) => AsyncIterable<unknown>,
    toBody: (result: GenerateResult, meta: Meta) => unknown,
    options: RespondOptions,
  ): Promise<unknown>;
}
