import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import {
  chatPromptIds,
  type Engine,
  type GenerateRequest,
  type GenerateResult,
  type StreamEvent,
  type TokenLogprob,
} from '@switchyard/core';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { badRequest, errorBody, HttpError, toHttpError } from './errors.js';
import { loadMedia, type MediaPolicy } from './media.js';
import { asBody, type Body, parseChat, parseCompletion, parseNativeGenerate } from './openai-requests.js';
import { prometheusText } from './prometheus.js';
import { type PlaygroundOptions, registerPlayground } from './routes/playground.js';
import { applyTools, parseToolCalls, ToolCallStream, type ToolOutput } from './tool-calls.js';

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
  /** Serve the playground page at `/` and its API under /v1/playground (off when absent). */
  playground?: PlaygroundOptions;
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

  const app = Fastify({ bodyLimit: options.bodyLimit ?? 64 * 1024 * 1024, logger: false });

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

  if (options.playground) registerPlayground(app, { ...options.playground, engine, modelName, admit });

  app.get('/health', async (_req, reply) => {
    if (draining) return reply.status(503).send({ status: 'draining' });
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
    checkQueue();
    await loadImages(parsed.request, parsed.images, 'messages');
    return respond(
      reply,
      parsed.request,
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
    checkQueue();
    return respond(
      reply,
      parsed.request,
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
    checkQueue();
    await loadImages(parsed.request, parsed.images, 'image_data');
    return respond(reply, parsed.request, parsed.stream, nativeStream, nativeResponse);
  });

  app.post('/tokenize', async (req) => {
    admit(req);
    const body = asBody(req.body);
    const addSpecial = body.add_special_tokens !== false;
    let tokens: number[];
    if (typeof body.prompt === 'string') tokens = engine.tokenizer.encode(body.prompt, addSpecial);
    else if (Array.isArray(body.messages)) {
      // The engine's own renderer, so the count matches what a chat request runs.
      tokens = chatPromptIds(engine.checkpoint, engine.spec, parseChat(body, maxImages).request.messages!);
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

  /** Runs one request: a JSON answer, or server-sent events; a client that goes away aborts it. */
  async function respond(
    reply: FastifyReply,
    request: GenerateRequest,
    stream: boolean,
    toChunks: (events: AsyncIterable<StreamEvent>, meta: Meta) => AsyncIterable<unknown>,
    toBody: (result: GenerateResult, meta: Meta) => unknown,
  ) {
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
    };
    const events = engine.stream(request, controller.signal);
    // The first event validates the request: a bad one still gets a plain JSON error.
    const first = await events.next();
    const rest = prepend(first, events);
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
        res.write(`data: ${JSON.stringify(chunk)}\n\n`);
      }
    } catch (e) {
      if (!controller.signal.aborted) res.write(`data: ${JSON.stringify(errorBody(toHttpError(e)))}\n\n`);
    }
    if (!controller.signal.aborted) res.end('data: [DONE]\n\n');
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

interface Meta {
  id: string;
  created: number;
  model: string;
  engine: Engine;
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
