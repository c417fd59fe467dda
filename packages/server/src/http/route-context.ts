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

/** What `respond` runs: one request or a batch, with each request's image sources. */
export interface RespondInput {
  requests: GenerateRequest[];
  /** Per request, its image sources (URLs, data URLs); fetched under the media policy. */
  images: string[][];
  /** The request field the images came in (named by errors). */
  param: string;
}

/** What a route file needs from the server: admission and the engine driver. */
export interface RouteContext {
  engine: Engine;
  modelName: string;
  maxImages: number;
  /** Key, drain state; throws the HTTP error. */
  admit(req: FastifyRequest): void;
  /**
   * Runs requests (a batch answered as one) as JSON or server-sent events: a seat in the waiting
   * room (429 when full), the images fetched, the engine run, all under the connection's abort.
   */
  respond(
    reply: FastifyReply,
    input: RespondInput,
    stream: boolean,
    toChunks: (events: AsyncIterable<StreamEvent>, meta: Meta) => AsyncIterable<unknown>,
    toBody: (result: GenerateResult, meta: Meta) => unknown,
    options: RespondOptions,
  ): Promise<unknown>;
}
