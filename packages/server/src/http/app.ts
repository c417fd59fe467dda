import { randomUUID } from 'node:crypto';
import type { Engine, GenerateRequest, GenerateResult, StreamEvent, TokenLogprob } from '@switchyard/core';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { Admission } from './admission.js';
import { drainServer, InFlight, type RequestScope } from './drain.js';
import { badRequest, errorBody, HttpError, toHttpError } from './errors.js';
import { loadMedia, type MediaPolicy } from './media.js';
import { asBody, type Body, parseChat, parseCompletion, parseNativeGenerate } from './openai-requests.js';
import { prometheusText } from './prometheus.js';
import { type PlaygroundOptions, registerPlayground } from './routes/playground.js';
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
    logger: false,
    ...timeoutOptions(options.timeouts),
  });

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
    return { status: 'ok' };
  });

  app.get('/metrics', async (_req, reply) => {
    void reply.type('text/plain; version=0.0.4');
    return prometheusText(engine, modelName);
  });

  app.get('/v1/models', async (req) => {
    admit(req);
    return {
      object: 'list',
      data: [
        {
          id: modelName,
          object: 'model',
          created: 0,
          owned_by: 'switchyard',
          max_model_len: engine.info.maxModelLen,
        },
      ],
    };
  });

  app.post('/v1/chat/completions', async (req, reply) => {
    admit(req);
    const body = asBody(req.body);
    checkModel(body);
    const parsed = parseChat(body, maxImages);
    const tools = applyTools(parsed.request, parsed.tools, engine.checkpoint.chatTemplate);
    return respond(
      reply,
      { request: parsed.request, images: parsed.images, param: 'messages' },
      parsed.stream,
      (events, meta) => openaiStream(events, meta, 'chat', parsed.includeUsage, tools),
      (r, meta) => openaiResponse(r, meta, 'chat', tools),
    );
  });

  app.post('/v1/completions', async (req, reply) => {
    admit(req);
    const body = asBody(req.body);
    checkModel(body);
    const parsed = parseCompletion(body);
    return respond(
      reply,
      { request: parsed.request, images: [], param: 'prompt' },
      parsed.stream,
      (events, meta) => openaiStream(events, meta, 'completion', parsed.includeUsage),
      (r, meta) => openaiResponse(r, meta, 'completion'),
    );
  });

  app.post('/generate', async (req, reply) => {
    admit(req);
    const parsed = parseNativeGenerate(asBody(req.body));
    if (parsed.images.length > maxImages) {
      throw badRequest(
        `the request has ${parsed.images.length} images; at most ${maxImages} are accepted`,
        'image_data',
      );
    }
    return respond(
      reply,
      { request: parsed.request, images: parsed.images, param: 'image_data' },
      parsed.stream,
      nativeStream,
      nativeResponse,
    );
  });

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
      tokens = await engine.promptIds({ messages: parseChat(body, maxImages).request.messages! });
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
   * Runs one request: takes a seat in the waiting room, fetches its images, then answers JSON or
   * server-sent events. A client that goes away, at any stage, aborts it.
   */
  async function respond(
    reply: FastifyReply,
    input: { request: GenerateRequest; images: string[]; param: string },
    stream: boolean,
    toChunks: (events: AsyncIterable<StreamEvent>, meta: Meta) => AsyncIterable<unknown>,
    toBody: (result: GenerateResult, meta: Meta) => unknown,
  ) {
    const leave = admission.seat();
    const scope = inFlight.open(reply);
    try {
      await loadImages(input.request, input.images, input.param, scope.signal);
      if (scope.signal.aborted) throw scope.signal.reason;
      return await answer(reply, input.request, scope, leave, stream, toChunks, toBody);
    } finally {
      leave();
      scope.end();
    }
  }

  async function answer(
    reply: FastifyReply,
    request: GenerateRequest,
    scope: RequestScope,
    leave: () => void,
    stream: boolean,
    toChunks: (events: AsyncIterable<StreamEvent>, meta: Meta) => AsyncIterable<unknown>,
    toBody: (result: GenerateResult, meta: Meta) => unknown,
  ) {
    const { signal } = scope;
    const meta: Meta = {
      id: randomUUID().replaceAll('-', ''),
      created: Math.floor(Date.now() / 1000),
      model: modelName,
      engine,
    };
    const events = engine.stream(request, signal);
    // The engine counts the request (preparing, then waiting) from its first step on.
    leave();
    // The first event validates the request: a bad one still gets a plain JSON error.
    const first = await events.next();
    const rest = prepend(first, events);
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
        res.write(`data: ${JSON.stringify(chunk)}\n\n`);
      }
      // Stopped by a drain: say so before [DONE].
      if (signal.aborted && !scope.clientGone()) throw signal.reason;
    } catch (e) {
      if (!scope.clientGone()) res.write(`data: ${JSON.stringify(errorBody(toHttpError(e)))}\n\n`);
    }
    if (!scope.clientGone()) res.end('data: [DONE]\n\n');
  }

  async function drain(timeoutMs: number): Promise<void> {
    admission.draining = true;
    await drainServer(app, engine, inFlight, timeoutMs);
  }

  return { app, modelName, drain };
}

interface Meta {
  id: string;
  created: number;
  model: string;
  engine: Engine;
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

function openaiResponse(r: GenerateResult, meta: Meta, kind: Kind, tools?: ToolOutput) {
  const choices = r.outputs.map((o) => {
    const parsed = tools ? parseToolCalls(o.text, tools.dialect, tools.tools) : undefined;
    const calls = parsed?.calls.length ? { tool_calls: parsed.calls } : {};
    const message = { role: 'assistant', content: parsed ? parsed.content : o.text, ...calls };
    return {
      index: o.index,
      ...(kind === 'chat' ? { message } : { text: o.text }),
      logprobs: logprobsOf(meta.engine, o.logprobs, kind),
      finish_reason: parsed?.calls.length ? 'tool_calls' : o.finishReason,
    };
  });
  return {
    id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${meta.id}`,
    object: kind === 'chat' ? 'chat.completion' : 'text_completion',
    created: meta.created,
    model: meta.model,
    choices,
    usage: usage(r),
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
    choices,
    ...extra,
  });
  for await (const e of events) {
    if (e.type === 'done') {
      if (includeUsage) yield chunk([], { usage: usage(e.result) });
      return;
    }
    const first = !started.has(e.index);
    started.add(e.index);
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
      const calls = d.calls.map((c) => ({ index: ts.numCalls++, ...c }));
      delta = { content: d.content, ...(calls.length ? { tool_calls: calls } : {}) };
      if (e.finishReason && ts.numCalls > 0) finish = 'tool_calls';
      if (!first && !finish && !d.content && calls.length === 0) continue;
    }
    const body =
      kind === 'chat' ? { delta: first ? { role: 'assistant', ...delta } : delta } : { text: e.text };
    yield chunk([
      {
        index: e.index,
        ...body,
        logprobs: logprobsOf(meta.engine, e.logprobs, kind),
        finish_reason: finish,
      },
    ]);
  }
}

/** SGLang's /generate answer: one object per completion (an array when n > 1). */
function nativeResponse(r: GenerateResult, meta: Meta) {
  const one = (o: GenerateResult['outputs'][number]) => ({
    text: o.text,
    output_ids: o.tokenIds,
    meta_info: {
      id: meta.id,
      prompt_tokens: r.usage.promptTokens,
      completion_tokens: o.tokenIds.length,
      cached_tokens: r.usage.cachedTokens,
      finish_reason: { type: o.finishReason },
      e2e_latency: r.metrics.e2eMs / 1000,
    },
  });
  return r.outputs.length === 1 ? one(r.outputs[0]) : r.outputs.map(one);
}

/** SGLang streams the whole text so far in every event. */
async function* nativeStream(events: AsyncIterable<StreamEvent>, meta: Meta) {
  const text = new Map<number, string>();
  const ids = new Map<number, number[]>();
  for await (const e of events) {
    if (e.type === 'done') return;
    text.set(e.index, (text.get(e.index) ?? '') + e.text);
    ids.set(e.index, [...(ids.get(e.index) ?? []), ...e.tokenIds]);
    yield {
      index: e.index,
      text: text.get(e.index),
      output_ids: ids.get(e.index),
      meta_info: {
        id: meta.id,
        completion_tokens: ids.get(e.index)!.length,
        finish_reason: e.finishReason ? { type: e.finishReason } : null,
      },
    };
  }
}
