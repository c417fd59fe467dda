import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import {
  chatPromptIds,
  type Engine,
  type GenerateRequest,
  type GenerateResult,
  type StreamEvent,
  type TokenLogprob,
} from '@switchyard/core';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
} from 'fastify';
import { badRequest, errorBody, HttpError, toHttpError } from './errors.js';
import { loadMedia, type MediaPolicy } from './media.js';
import { asBody, type Body, parseChat, parseCompletion } from './openai-requests.js';
import { ServerMetrics } from './prometheus.js';
import { logRequest } from './request-log.js';
import type { Meta, RespondOptions, RouteContext } from './route-context.js';
import { registerLightllmRoutes } from './routes/lightllm.js';
import { registerSglangRoutes } from './routes/sglang.js';

export interface ServerOptions {
  engine: Engine;
  /** The id clients send as `model` (default: the checkpoint folder's name). */
  modelName?: string;
  /** When set, /v1, /generate, /tokenize and /detokenize need `Authorization: Bearer KEY`. */
  apiKey?: string;
  /** Waiting sequences past which new requests get 429 (default 1024). */
  maxWaiting?: number;
  /** Largest request body in bytes (default 64 MiB: a few base64 images). */
  bodyLimit?: number;
  maxImagesPerRequest?: number;
  /** Where images may come from (data URLs always; http(s) and local files as allowed here). */
  media?: MediaPolicy;
  /** fastify's (pino) logger: false (default) for none, or pino options such as `{ level: 'info' }`. */
  logger?: FastifyServerOptions['logger'];
  /** One log line per generation request (default true when there is a logger). */
  logRequests?: boolean;
  /** Put prompt text (never images) in the request log lines (default false). */
  logPrompts?: boolean;
}

export interface Server {
  app: FastifyInstance;
  modelName: string;
  /** Stops taking requests (503), lets running ones finish for up to `timeoutMs`, then closes. */
  drain(timeoutMs: number): Promise<void>;
}

type Kind = 'chat' | 'completion';

/** The HTTP server: the OpenAI-compatible API under /v1, SGLang's /generate, and operations routes. */
export function buildServer(options: ServerOptions): Server {
  const { engine } = options;
  const modelName = options.modelName ?? engine.info.model.split(/[\\/]/).filter(Boolean).pop()!;
  const maxWaiting = options.maxWaiting ?? 1024;
  const maxImages = options.maxImagesPerRequest ?? 8;
  const keyDigest = options.apiKey ? sha256(options.apiKey) : undefined;
  let draining = false;

  const app = Fastify({
    bodyLimit: options.bodyLimit ?? 64 * 1024 * 1024,
    logger: options.logger ?? false,
    // One line per request comes from `respond` instead, with tokens and latencies.
    logController: new LogController({ disableRequestLogging: true }),
  });
  const metrics = new ServerMetrics(engine, modelName);

  app.setErrorHandler((error, _req, reply) => {
    const e = toHttpError(error);
    void reply.status(e.status).send(errorBody(e));
  });
  app.setNotFoundHandler((req, reply) => {
    void reply
      .status(404)
      .send(
        errorBody(
          new HttpError(404, `no route ${req.method} ${req.url}`, 'not_found_error', null, 'not_found'),
        ),
      );
  });

  /** Checks key, drain state and queue room before any work is done. */
  const admit = (req: FastifyRequest, { auth = true } = {}) => {
    if (auth && keyDigest) {
      const header = req.headers.authorization ?? '';
      const given = header.startsWith('Bearer ') ? header.slice(7) : '';
      if (!timingSafeEqual(sha256(given), keyDigest)) {
        throw new HttpError(
          401,
          'missing or wrong API key: send Authorization: Bearer <key>',
          'authentication_error',
          null,
          'invalid_api_key',
        );
      }
    }
    if (draining)
      throw new HttpError(
        503,
        'the server is shutting down; retry on another instance',
        'service_unavailable',
        null,
        'draining',
      );
  };
  const checkQueue = () => {
    if (engine.stats().numWaiting >= maxWaiting) {
      throw new HttpError(
        429,
        `the waiting queue is full (${maxWaiting} sequences); retry later`,
        'rate_limit_error',
        null,
        'queue_full',
      );
    }
  };
  const checkModel = (body: Body) => {
    if (body.model === undefined || body.model === null) return;
    // Never String() a client's value: {"toString": 1} throws, a deeply nested array overflows the stack.
    if (typeof body.model !== 'string') throw badRequest('model must be a string', 'model');
    if (body.model !== modelName) {
      throw new HttpError(
        404,
        `the model '${body.model}' does not exist; this server serves '${modelName}'`,
        'not_found_error',
        'model',
        'model_not_found',
      );
    }
  };
  const modelCard = () => ({
    id: modelName,
    object: 'model',
    created: 0,
    owned_by: 'switchyard',
    root: engine.info.model,
    max_model_len: engine.info.maxModelLen,
  });
  /** Names this build and model: changes when either does, as OpenAI's fingerprint does. */
  const fingerprint = `fp_${sha256(`${modelName}\0${engine.info.model}\0${engine.info.device}\0${engine.info.dtype}`).toString('hex').slice(0, 10)}`;
  const media: MediaPolicy = options.media ?? { allowedDomains: [] };
  /**
   * Fetches a request's images under the media policy and hands the engine their bytes: chat
   * `image_url` parts become `{"type": "image"}` parts, so the engine never sees a URL or a path.
   */
  const loadImages = async (request: GenerateRequest, urls: string[], param: string) => {
    if (urls.length === 0) return;
    if (!engine.spec.multimodal) throw badRequest(`the model '${modelName}' does not accept images`, param);
    request.images = await Promise.all(urls.map((url) => loadMedia(url, media, param)));
    request.messages = request.messages?.map((m) =>
      typeof m.content === 'string'
        ? m
        : { ...m, content: m.content.map((p) => (p.type === 'image_url' ? { type: 'image' as const } : p)) },
    );
  };

  app.get('/health', async (_req, reply) => {
    if (draining) return reply.status(503).send({ status: 'draining' });
    return { status: 'ok' };
  });

  app.get('/metrics', async (_req, reply) => {
    void reply.type(metrics.contentType);
    return metrics.text();
  });

  app.get('/v1/models', async (req) => {
    admit(req);
    return { object: 'list', data: [modelCard()] };
  });

  app.get('/v1/models/:id', async (req) => {
    admit(req);
    const id = (req.params as { id: string }).id;
    if (id !== modelName) {
      throw new HttpError(
        404,
        `the model '${id}' does not exist; this server serves '${modelName}'`,
        'not_found_error',
        'model',
        'model_not_found',
      );
    }
    return modelCard();
  });

  app.post('/v1/chat/completions', async (req, reply) => {
    admit(req);
    const body = asBody(req.body);
    checkModel(body);
    const parsed = parseChat(body, maxImages);
    checkQueue();
    await loadImages(parsed.request, parsed.images, 'messages');
    return respond(
      reply,
      [parsed.request],
      parsed.stream,
      (events, meta) => openaiStream(events, meta, 'chat', parsed.includeUsage),
      (r, meta) => openaiResponse(r, meta, 'chat'),
      { warnings: parsed.warnings, route: '/v1/chat/completions' },
    );
  });

  app.post('/v1/completions', async (req, reply) => {
    admit(req);
    const body = asBody(req.body);
    checkModel(body);
    const parsed = parseCompletion(body);
    checkQueue();
    const echo = parsed.echo
      ? parsed.prompts.map((p) => (typeof p === 'string' ? p : engine.tokenizer.decode(p, false)))
      : undefined;
    return respond(
      reply,
      parsed.requests,
      parsed.stream,
      (events, meta) => openaiStream(events, meta, 'completion', parsed.includeUsage),
      (r, meta) => openaiResponse(r, meta, 'completion'),
      { warnings: parsed.warnings, echo, route: '/v1/completions' },
    );
  });

  const ctx: RouteContext = {
    engine,
    modelName,
    maxImages,
    admit: (req) => admit(req),
    checkQueue,
    loadImages,
    respond,
  };
  registerSglangRoutes(app, ctx);
  registerLightllmRoutes(app, ctx);

  app.post('/tokenize', async (req) => {
    admit(req);
    const body = asBody(req.body);
    const addSpecial = body.add_special_tokens !== false;
    let tokens: number[];
    if (typeof body.prompt === 'string') tokens = engine.tokenizer.encode(body.prompt, addSpecial);
    else if (Array.isArray(body.messages)) {
      // The engine's own renderer, so the count matches what a chat request runs.
      tokens = chatPromptIds(
        engine.checkpoint,
        engine.spec,
        parseChat({ messages: body.messages }, maxImages).request.messages!,
      );
    } else throw badRequest('give prompt (a string) or messages', 'prompt');
    return { tokens, count: tokens.length, max_model_len: engine.info.maxModelLen };
  });

  app.post('/detokenize', async (req) => {
    admit(req);
    const tokens = asBody(req.body).tokens;
    const vocab = engine.info.vocabSize;
    if (!Array.isArray(tokens) || !tokens.every((t) => Number.isInteger(t) && t >= 0 && t < vocab)) {
      throw badRequest(`tokens must be an array of token ids in 0..${vocab - 1}`, 'tokens');
    }
    return { prompt: engine.tokenizer.decode(tokens, false) };
  });

  /**
   * Runs a request (or a batch of them, answered as one: choice i × n + j is completion j of
   * request i): a JSON answer, or server-sent events; a client that goes away aborts them all.
   */
  async function respond(
    reply: FastifyReply,
    requests: GenerateRequest[],
    stream: boolean,
    toChunks: (events: AsyncIterable<StreamEvent>, meta: Meta) => AsyncIterable<unknown>,
    toBody: (result: GenerateResult, meta: Meta) => unknown,
    extra: RespondOptions,
  ) {
    const framing = extra.framing ?? { prefix: 'data: ', done: true };
    const controller = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableFinished) controller.abort();
    };
    reply.raw.on('close', onClose);
    const meta: Meta = {
      id: randomUUID().replaceAll('-', ''),
      created: Math.floor(Date.now() / 1000),
      model: modelName,
      engine,
      fingerprint,
      warnings: extra.warnings ?? [],
      echo: extra.echo,
      results: [],
      n: requests[0].sampling?.n ?? 1,
    };
    for (const w of meta.warnings) reply.log.warn({ route: extra.route }, w);
    const startedAt = performance.now();
    let error: unknown;
    try {
      return await run();
    } catch (e) {
      error = e;
      throw e;
    } finally {
      meta.results.forEach((r, i) => {
        if (r) metrics.observe(requests[i], r);
      });
      if (options.logRequests !== false)
        logRequest(reply.log, {
          id: meta.id,
          route: extra.route,
          requests,
          results: meta.results,
          startedAt,
          logPrompts: options.logPrompts ?? false,
          error,
        });
    }

    async function run() {
      // The first event of each validates it: a bad request still gets a plain JSON error.
      const streams = requests.map((r) => engine.stream(r, controller.signal));
      let firsts: IteratorResult<StreamEvent>[];
      try {
        firsts = await Promise.all(streams.map((s) => s.next()));
      } catch (e) {
        controller.abort();
        throw e;
      }
      const rest = mergeEvents(
        streams.map((s, i) => prepend(firsts[i], s)),
        meta,
      );
      if (!stream) {
        let result: GenerateResult | undefined;
        for await (const e of rest) if (e.type === 'done') result = e.result;
        return toBody(result!, meta);
      }
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
      });
      try {
        for await (const chunk of toChunks(rest, meta)) {
          if (controller.signal.aborted) break;
          res.write(`${framing.prefix}${JSON.stringify(chunk)}\n\n`);
        }
      } catch (e) {
        if (!controller.signal.aborted)
          res.write(`${framing.prefix}${JSON.stringify(errorBody(toHttpError(e)))}\n\n`);
      }
      if (!controller.signal.aborted) res.end(framing.done ? `${framing.prefix}[DONE]\n\n` : undefined);
    }
  }

  async function drain(timeoutMs: number): Promise<void> {
    draining = true;
    const deadline = Date.now() + timeoutMs;
    while (engine.numUnfinished() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await app.close();
    await engine.close();
  }

  return { app, modelName, drain };
}

/**
 * One stream of a batch of requests: deltas re-indexed (request i's completion j becomes
 * i × n + j; every request of a batch has the same n) and one final 'done' whose result
 * joins theirs (outputs in choice order, usage summed). Fills `meta.results`.
 */
async function* mergeEvents(streams: AsyncGenerator<StreamEvent>[], meta: Meta): AsyncGenerator<StreamEvent> {
  if (streams.length === 1) {
    for await (const e of streams[0]) {
      if (e.type === 'done') meta.results = [e.result];
      yield e;
    }
    return;
  }
  const n = new Array<GenerateResult>(streams.length);
  meta.results = n;
  const queue: { i: number; e: StreamEvent }[] = [];
  let wake: (() => void) | undefined;
  let live = streams.length;
  let failure: unknown;
  streams.forEach(async (s, i) => {
    try {
      for await (const e of s) {
        queue.push({ i, e });
        wake?.();
      }
    } catch (err) {
      failure ??= err;
    } finally {
      live--;
      wake?.();
    }
  });
  while (live > 0 || queue.length > 0) {
    if (queue.length === 0) {
      await new Promise<void>((r) => {
        wake = r;
      });
      wake = undefined;
      if (failure) throw failure;
      continue;
    }
    const { i, e } = queue.shift()!;
    if (e.type === 'done') n[i] = e.result;
    else yield { ...e, index: i * meta.n + e.index };
  }
  if (failure) throw failure;
  const outputs = n.flatMap((r, i) => r.outputs.map((o) => ({ ...o, index: i * meta.n + o.index })));
  const sum = (f: (r: GenerateResult) => number) => n.reduce((a, r) => a + f(r), 0);
  yield {
    type: 'done',
    result: {
      ...n[0],
      outputs,
      usage: {
        promptTokens: sum((r) => r.usage.promptTokens),
        completionTokens: sum((r) => r.usage.completionTokens),
        cachedTokens: sum((r) => r.usage.cachedTokens),
      },
    },
  };
}

async function* prepend<T>(first: IteratorResult<T>, rest: AsyncIterator<T>): AsyncGenerator<T> {
  if (first.done) return;
  yield first.value;
  while (true) {
    const next = await rest.next();
    if (next.done) return;
    yield next.value;
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function usage(r: GenerateResult) {
  return {
    prompt_tokens: r.usage.promptTokens,
    completion_tokens: r.usage.completionTokens,
    total_tokens: r.usage.promptTokens + r.usage.completionTokens,
    prompt_tokens_details: { cached_tokens: r.usage.cachedTokens },
  };
}

function tokenText(engine: Engine, id: number): string {
  return engine.tokenizer.decode([id], false);
}

/** OpenAI's logprobs objects: chat (`content: [...]`) or completions (parallel arrays). */
function logprobsOf(engine: Engine, lps: TokenLogprob[] | undefined, kind: Kind) {
  if (!lps) return null;
  if (kind === 'chat') {
    const entry = (token: number, logprob: number) => {
      const text = tokenText(engine, token);
      return { token: text, logprob, bytes: [...Buffer.from(text)] };
    };
    return {
      content: lps.map((l) => ({
        ...entry(l.token, l.logprob),
        top_logprobs: l.top.map((t) => entry(t.token, t.logprob)),
      })),
    };
  }
  return {
    tokens: lps.map((l) => tokenText(engine, l.token)),
    token_logprobs: lps.map((l) => l.logprob),
    top_logprobs: lps.map((l) =>
      Object.fromEntries(l.top.map((t) => [tokenText(engine, t.token), t.logprob])),
    ),
  };
}

/** vLLM's `prompt_logprobs`: null for the first token, then {token id: {logprob, rank, decoded_token}}. */
function promptLogprobsOf(engine: Engine, lps: GenerateResult['promptLogprobs']) {
  if (!lps) return undefined;
  return lps.map((l) => {
    if (!l) return null;
    const entry: Record<string, { logprob: number; rank?: number; decoded_token: string }> = {};
    l.top.forEach((t, i) => {
      entry[t.token] = { logprob: t.logprob, rank: i + 1, decoded_token: tokenText(engine, t.token) };
    });
    entry[l.token] = { logprob: l.logprob, rank: l.rank, decoded_token: tokenText(engine, l.token) };
    return entry;
  });
}

/** Completions logprobs with the prompt's tokens first (echo): the first prompt token has none. */
function echoLogprobs(engine: Engine, r: GenerateResult, out: TokenLogprob[] | undefined) {
  const own = logprobsOf(engine, out ?? [], 'completion') as {
    tokens: string[];
    token_logprobs: number[];
    top_logprobs: Record<string, number>[];
  };
  const lps = r.promptLogprobs ?? r.promptTokenIds.map(() => null);
  return {
    tokens: [...r.promptTokenIds.map((t) => tokenText(engine, t)), ...own.tokens],
    token_logprobs: [...lps.map((l) => l?.logprob ?? null), ...own.token_logprobs],
    top_logprobs: [
      ...lps.map((l) =>
        l ? Object.fromEntries(l.top.map((t) => [tokenText(engine, t.token), t.logprob])) : null,
      ),
      ...own.top_logprobs,
    ],
  };
}

function openaiResponse(r: GenerateResult, meta: Meta, kind: Kind) {
  const choices = r.outputs.map((o) => {
    const request = meta.results[Math.floor(o.index / meta.n)] ?? r;
    const echo = meta.echo?.[Math.floor(o.index / meta.n)];
    const text = echo === undefined ? o.text : echo + o.text;
    const logprobs =
      echo !== undefined && o.logprobs
        ? echoLogprobs(meta.engine, request, o.logprobs)
        : logprobsOf(meta.engine, o.logprobs, kind);
    return {
      index: o.index,
      ...(kind === 'chat' ? { message: { role: 'assistant', content: o.text } } : { text }),
      logprobs,
      finish_reason: o.finishReason,
      stop_reason: o.stopReason ?? null,
      ...(kind === 'completion' && request.promptLogprobs
        ? { prompt_logprobs: promptLogprobsOf(meta.engine, request.promptLogprobs) }
        : {}),
    };
  });
  return {
    id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${meta.id}`,
    object: kind === 'chat' ? 'chat.completion' : 'text_completion',
    created: meta.created,
    model: meta.model,
    system_fingerprint: meta.fingerprint,
    choices,
    usage: usage(r),
    ...(kind === 'chat' && r.promptLogprobs
      ? { prompt_logprobs: promptLogprobsOf(meta.engine, r.promptLogprobs) }
      : {}),
    ...(meta.warnings.length ? { warnings: meta.warnings } : {}),
  };
}

async function* openaiStream(
  events: AsyncIterable<StreamEvent>,
  meta: Meta,
  kind: Kind,
  includeUsage: boolean,
) {
  const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${meta.id}`;
  const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  const started = new Set<number>();
  const chunk = (choices: unknown[], extra: object = {}) => ({
    id,
    object,
    created: meta.created,
    model: meta.model,
    system_fingerprint: meta.fingerprint,
    choices,
    ...extra,
  });
  let warned = false;
  for await (const e of events) {
    if (e.type === 'done') {
      if (includeUsage) yield chunk([], { usage: usage(e.result) });
      return;
    }
    const first = !started.has(e.index);
    started.add(e.index);
    const echo = first ? (meta.echo?.[Math.floor(e.index / meta.n)] ?? '') : '';
    const body =
      kind === 'chat'
        ? { delta: first ? { role: 'assistant', content: e.text } : { content: e.text } }
        : { text: echo + e.text };
    const extra = !warned && meta.warnings.length ? { warnings: meta.warnings } : {};
    warned = true;
    yield chunk(
      [
        {
          index: e.index,
          ...body,
          logprobs: logprobsOf(meta.engine, e.logprobs, kind),
          finish_reason: e.finishReason ?? null,
          ...(e.finishReason ? { stop_reason: e.stopReason ?? null } : {}),
        },
      ],
      extra,
    );
  }
}
