import { createHash, randomUUID } from 'node:crypto';
import type { Engine, GenerateRequest, GenerateResult, StreamEvent, TokenLogprob } from '@switchyard/core';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyServerOptions,
  LogController,
} from 'fastify';
import { Admission } from './admission.js';
import { drainServer, InFlight, type RequestScope } from './drain.js';
import { badRequest, errorBody, HttpError, toHttpError } from './errors.js';
import { loadMedia, type MediaPolicy } from './media.js';
import { asBody, type Body, parseChat, parseCompletion } from './openai-requests.js';
import { ServerMetrics } from './prometheus.js';
import { logRequest } from './request-log.js';
import type { Framing, Meta, RespondInput, RespondOptions, RouteContext } from './route-context.js';
import { registerLightllmRoutes } from './routes/lightllm.js';
import { type PlaygroundOptions, registerPlayground } from './routes/playground.js';
import { registerSglangRoutes } from './routes/sglang.js';
import { type Timeouts, timeoutOptions } from './timeouts.js';
import { applyTools, parseToolCalls, ToolCallStream, type ToolOutput } from './tool-calls.js';

export interface ServerOptions {
  engine: Engine;
  /** The id clients send as `model` (default: the checkpoint folder's name). */
  modelName?: string;
  /** When set, /v1, /generate, /tokenize and /detokenize need `Authorization: Bearer KEY`. */
  apiKey?: string;
  /**
   * Requests waiting past which new ones get 429 (default 1024): queued sequences, requests being
   * prepared (tokenized, images decoded) and requests still fetching their images.
   */
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
  /** Serve the playground page at `/` and its API under /v1/playground (off when absent). */
  playground?: PlaygroundOptions;
  /** Limits on slow clients: headers, the whole request, idle keep-alive (see `Timeouts`). */
  timeouts?: Partial<Timeouts>;
}

export interface Server {
  app: FastifyInstance;
  modelName: string;
  /**
   * Stops taking requests (503), lets running ones finish for up to `timeoutMs`, then aborts what
   * is left (streams end with an error event and `[DONE]`), closes every connection and the engine.
   */
  drain(timeoutMs: number): Promise<void>;
}

type Kind = 'chat' | 'completion';

/** The HTTP server: the OpenAI-compatible API under /v1, SGLang's /generate, and operations routes. */
export function buildServer(options: ServerOptions): Server {
  const { engine } = options;
  const modelName = options.modelName ?? engine.info.model.split(/[\\/]/).filter(Boolean).pop()!;
  const maxWaiting = options.maxWaiting ?? 1024;
  const maxImages = options.maxImagesPerRequest ?? 8;
  const admission = new Admission(engine, { apiKey: options.apiKey || undefined, maxWaiting });
  const inFlight = new InFlight();

  const app = Fastify({
    bodyLimit: options.bodyLimit ?? 64 * 1024 * 1024,
    logger: options.logger ?? false,
    // One line per request comes from `respond` instead, with tokens and latencies.
    logController: new LogController({ disableRequestLogging: true }),
    ...timeoutOptions(options.timeouts),
  });
  const metrics = new ServerMetrics(engine, modelName);

  inFlight.watch(app.server);

  app.setErrorHandler((error, _req, reply) => {
    const e = toHttpError(error);
    void reply.status(e.status).headers(e.headers).send(errorBody(e));
  });
  // A compressed body is refused before it is read, rather than parsed as if it were plain JSON.
  app.addHook('onRequest', async (req) => {
    const encoding = req.headers['content-encoding']?.trim().toLowerCase();
    if (encoding && encoding !== 'identity') {
      throw new HttpError(
        415,
        `Content-Encoding ${JSON.stringify(encoding)} is not supported; send the request body uncompressed`,
        'invalid_request_error',
        null,
        'unsupported_content_encoding',
      );
    }
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

  const admit = admission.check.bind(admission);
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
  const loadImages = async (request: GenerateRequest, urls: string[], param: string, signal: AbortSignal) => {
    if (urls.length === 0) return;
    if (!engine.spec.multimodal) throw badRequest(`the model '${modelName}' does not accept images`, param);
    request.images = await Promise.all(urls.map((url) => loadMedia(url, media, param, signal)));
    request.messages = request.messages?.map((m) =>
      typeof m.content === 'string'
        ? m
        : { ...m, content: m.content.map((p) => (p.type === 'image_url' ? { type: 'image' as const } : p)) },
    );
  };

  if (options.playground) registerPlayground(app, { ...options.playground, engine, modelName, admit });

  app.get('/health', async (_req, reply) => {
    if (admission.draining) return reply.status(503).send({ status: 'draining' });
    // The executor's process died: 503 while it restarts, and for good once it stays down.
    const executor = engine.health();
    if (executor.status !== 'ok')
      return reply.status(503).send({ status: `executor_${executor.status}`, reason: executor.reason });
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
    const tools = applyTools(parsed.request, parsed.tools, engine.checkpoint.chatTemplate);
    return respond(
      reply,
      { requests: [parsed.request], images: [parsed.images], param: 'messages' },
      parsed.stream,
      (events, meta) => openaiStream(events, meta, 'chat', parsed.includeUsage, tools),
      (r, meta) => openaiResponse(r, meta, 'chat', tools),
      { warnings: parsed.warnings, route: '/v1/chat/completions' },
    );
  });

  app.post('/v1/completions', async (req, reply) => {
    admit(req);
    const body = asBody(req.body);
    checkModel(body);
    const parsed = parseCompletion(body);
    const echo = parsed.echo
      ? parsed.prompts.map((p) => (typeof p === 'string' ? p : engine.tokenizer.decode(p, false)))
      : undefined;
    return respond(
      reply,
      { requests: parsed.requests, images: [], param: 'prompt' },
      parsed.stream,
      (events, meta) => openaiStream(events, meta, 'completion', parsed.includeUsage),
      (r, meta) => openaiResponse(r, meta, 'completion'),
      { warnings: parsed.warnings, echo, route: '/v1/completions' },
    );
  });

  const ctx: RouteContext = { engine, modelName, maxImages, admit: (req) => admit(req), respond };
  registerSglangRoutes(app, ctx);
  registerLightllmRoutes(app, ctx);

  app.post('/tokenize', async (req) => {
    admit(req);
    const body = asBody(req.body);
    const addSpecial = body.add_special_tokens !== false;
    let tokens: number[];
    if (typeof body.prompt === 'string') {
      // A text that cannot fit the context is refused before it ties up a thread tokenizing it.
      engine.checkPromptChars(body.prompt.length);
      tokens = await engine.encode(body.prompt, addSpecial);
    } else if (Array.isArray(body.messages)) {
      // The engine's own renderer, so the count matches what a chat request runs.
      tokens = await engine.promptIds({
        messages: parseChat({ messages: body.messages }, maxImages).request.messages!,
      });
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
   * request i): takes a seat in the waiting room, fetches the images, then answers JSON or
   * server-sent events. A client that goes away, at any stage, aborts them all.
   */
  async function respond(
    reply: FastifyReply,
    input: RespondInput,
    stream: boolean,
    toChunks: (events: AsyncIterable<StreamEvent>, meta: Meta) => AsyncIterable<unknown>,
    toBody: (result: GenerateResult, meta: Meta) => unknown,
    extra: RespondOptions,
  ) {
    const { requests } = input;
    const framing = extra.framing ?? { prefix: 'data: ', done: true };
    const leave = admission.seat();
    const scope = inFlight.open(reply);
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
      await Promise.all(
        requests.map((r, i) => loadImages(r, input.images[i] ?? [], input.param, scope.signal)),
      );
      if (scope.signal.aborted) throw scope.signal.reason;
      return await answer(reply, requests, meta, scope, leave, stream, toChunks, toBody, framing);
    } catch (e) {
      error = e;
      throw e;
    } finally {
      leave();
      scope.end();
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
  }

  async function answer(
    reply: FastifyReply,
    requests: GenerateRequest[],
    meta: Meta,
    scope: RequestScope,
    leave: () => void,
    stream: boolean,
    toChunks: (events: AsyncIterable<StreamEvent>, meta: Meta) => AsyncIterable<unknown>,
    toBody: (result: GenerateResult, meta: Meta) => unknown,
    framing: Framing,
  ) {
    const { signal } = scope;
    const streams = requests.map((r) => engine.stream(r, signal));
    // The engine counts the requests (preparing, then waiting) from their first step on.
    leave();
    // The first event of each validates it: a bad request still gets a plain JSON error.
    let firsts: IteratorResult<StreamEvent>[];
    try {
      firsts = await Promise.all(streams.map((s) => s.next()));
    } catch (e) {
      // One bad request of a batch: stop the others (return() aborts a queued request).
      for (const s of streams) void s.return(undefined).catch(() => {});
      throw e;
    }
    const rest = mergeEvents(
      streams.map((s, i) => prepend(firsts[i], s)),
      meta,
    );
    if (!stream) {
      let result: GenerateResult | undefined;
      for await (const e of rest) if (e.type === 'done') result = e.result;
      // Stopped by a drain: answer its 503, not a cut-short 200.
      if (signal.aborted) throw signal.reason;
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
        if (scope.clientGone()) break;
        res.write(`${framing.prefix}${JSON.stringify(chunk)}\n\n`);
      }
      // Stopped by a drain: say so before the end.
      if (signal.aborted && !scope.clientGone()) throw signal.reason;
    } catch (e) {
      if (!scope.clientGone()) res.write(`${framing.prefix}${JSON.stringify(errorBody(toHttpError(e)))}\n\n`);
    }
    if (!scope.clientGone()) res.end(framing.done ? `${framing.prefix}[DONE]\n\n` : undefined);
  }

  async function drain(timeoutMs: number): Promise<void> {
    admission.draining = true;
    await drainServer(app, engine, inFlight, timeoutMs);
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
  // The batch's streams run on their own; stopping early (`return()`) stops every one of them.
  try {
    yield* mergeBatch(streams, meta, n);
  } finally {
    for (const s of streams) void s.return(undefined).catch(() => {});
  }
}

async function* mergeBatch(
  streams: AsyncGenerator<StreamEvent>[],
  meta: Meta,
  n: GenerateResult[],
): AsyncGenerator<StreamEvent> {
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

/** `first`, then the rest of `rest`; stopping early (`return()`) stops `rest` too. */
async function* prepend<T>(first: IteratorResult<T>, rest: AsyncIterator<T>): AsyncGenerator<T> {
  try {
    if (first.done) return;
    yield first.value;
    while (true) {
      const next = await rest.next();
      if (next.done) return;
      yield next.value;
    }
  } finally {
    await rest.return?.(undefined);
  }
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

function openaiResponse(r: GenerateResult, meta: Meta, kind: Kind, tools?: ToolOutput) {
  const choices = r.outputs.map((o) => {
    const request = meta.results[Math.floor(o.index / meta.n)] ?? r;
    const echo = meta.echo?.[Math.floor(o.index / meta.n)];
    const text = echo === undefined ? o.text : echo + o.text;
    const logprobs =
      echo !== undefined && o.logprobs
        ? echoLogprobs(meta.engine, request, o.logprobs)
        : logprobsOf(meta.engine, o.logprobs, kind);
    const parsed = tools ? parseToolCalls(o.text, tools.dialect, tools.tools) : undefined;
    if (parsed && !tools?.parallel) parsed.calls = parsed.calls.slice(0, 1);
    const calls = parsed?.calls.length ? { tool_calls: parsed.calls } : {};
    const message = { role: 'assistant', content: parsed ? parsed.content : o.text, ...calls };
    return {
      index: o.index,
      ...(kind === 'chat' ? { message } : { text }),
      logprobs,
      finish_reason: parsed?.calls.length ? 'tool_calls' : o.finishReason,
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
  tools?: ToolOutput,
) {
  const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${meta.id}`;
  const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  const started = new Set<number>();
  const toolStreams = new Map<number, { stream: ToolCallStream; numCalls: number }>();
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
    let delta: Record<string, unknown> = { content: e.text };
    let finish: string | null = e.finishReason ?? null;
    if (tools) {
      let ts = toolStreams.get(e.index);
      if (!ts) {
        ts = { stream: new ToolCallStream(tools.dialect, tools.tools), numCalls: 0 };
        toolStreams.set(e.index, ts);
      }
      const d = ts.stream.push(e.text);
      if (e.finishReason) {
        const end = ts.stream.finish();
        d.content += end.content;
        d.calls.push(...end.calls);
      }
      // parallel_tool_calls false: the first call only.
      const room = tools.parallel ? d.calls.length : Math.max(0, 1 - ts.numCalls);
      const calls = d.calls.slice(0, room).map((c) => ({ index: ts.numCalls++, ...c }));
      delta = { content: d.content, ...(calls.length ? { tool_calls: calls } : {}) };
      if (e.finishReason && ts.numCalls > 0) finish = 'tool_calls';
      if (!first && !finish && !d.content && calls.length === 0) continue;
    }
    const body =
      kind === 'chat' ? { delta: first ? { role: 'assistant', ...delta } : delta } : { text: echo + e.text };
    const extra = !warned && meta.warnings.length ? { warnings: meta.warnings } : {};
    warned = true;
    yield chunk(
      [
        {
          index: e.index,
          ...body,
          logprobs: logprobsOf(meta.engine, e.logprobs, kind),
          finish_reason: finish,
          ...(e.finishReason ? { stop_reason: e.stopReason ?? null } : {}),
        },
      ],
      extra,
    );
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
