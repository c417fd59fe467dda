import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import fastifyStatic from '@fastify/static';
import {
  type DependencyContainer,
  type Engine,
  type EngineOptions,
  kvCacheRegistry,
  queuePolicies,
  schedulerRegistry,
} from '@switchyard/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { WORKLOADS } from '../../bench.js';
import { HttpError } from '../errors.js';
import { pictureTokens, planRun, RUN_LIMITS } from './playground-request.js';
import { type RunEvent, RunStore } from './playground-runs.js';

/** What `buildServer` needs to offer the playground (the page at `/` and `/v1/playground/*`). */
export interface PlaygroundOptions {
  /** The options the served engine was built from; each compared config starts from these. */
  engineOptions: EngineOptions;
  /** The container the served engine was built from: its registries list the parts offered. */
  container: DependencyContainer;
  /** Folder of the built page (default: the `@switchyard/playground` workspace's `dist/`). */
  staticDir?: string;
  /** Finished comparison runs kept for `GET /v1/playground/runs/:id` (default 16). */
  maxRuns?: number;
}

interface Context extends PlaygroundOptions {
  engine: Engine;
  modelName: string;
  /** The server's API key and drain check, as the other /v1 routes run it. */
  admit: (req: FastifyRequest) => void;
}

/** The built page's folder, resolved from the installed workspace package. */
export function defaultStaticDir(): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve('@switchyard/playground/package.json');
    return join(dirname(pkg), 'dist');
  } catch {
    return undefined;
  }
}

/**
 * Serves the playground: the static page at `/`, the model's example pictures, and comparison
 * runs (`POST /v1/playground/runs`, one at a time, progress as server-sent events).
 */
export function registerPlayground(app: FastifyInstance, ctx: Context): void {
  const { engine, admit } = ctx;
  const store = new RunStore(ctx.container, ctx.maxRuns);
  const root = ctx.staticDir ?? defaultStaticDir();
  if (root && existsSync(join(root, 'index.html'))) {
    void app.register(fastifyStatic, { root, index: 'index.html', maxAge: 0 });
  } else {
    app.get('/', async (_req, reply) =>
      reply
        .status(404)
        .type('text/plain')
        .send(
          `the playground is not built (no ${root ?? '@switchyard/playground'}/index.html): run \`npm run build\` at the repository root, or serve with --no-playground\n`,
        ),
    );
  }

  app.get('/v1/playground/info', async (req) => {
    admit(req);
    return {
      model: ctx.modelName,
      engine: engine.info,
      multimodal: engine.spec.multimodal !== undefined,
      schedulers: schedulerRegistry(ctx.container).names(),
      attentions: kvCacheRegistry(ctx.container).names(),
      policies: queuePolicies.names(),
      workloads: WORKLOADS,
      limits: RUN_LIMITS,
      served: {
        scheduler: engine.info.scheduler,
        attention: engine.info.attention,
        policy: ctx.engineOptions.policy ?? 'fcfs',
        block_size: engine.info.blockSize,
        kv_cache_tokens: engine.info.kvCacheTokens,
        max_num_seqs: ctx.engineOptions.maxNumSeqs ?? 64,
        max_num_batched_tokens: ctx.engineOptions.maxNumBatchedTokens ?? null,
        enable_prefix_caching: ctx.engineOptions.enablePrefixCaching ?? true,
        enable_chunked_prefill: ctx.engineOptions.enableChunkedPrefill ?? true,
      },
    };
  });

  app.get('/v1/playground/examples', async (req) => {
    admit(req);
    const dir = engine.checkpoint.dir;
    return { examples: engine.spec.multimodal ? examples(dir) : [], questions: exampleQuestions(dir) };
  });

  app.get<{ Params: { file: string } }>('/v1/playground/examples/:file', async (req, reply) => {
    admit(req);
    const found = examples(engine.checkpoint.dir).find((e) => e.file === req.params.file);
    if (!found)
      throw new HttpError(
        404,
        `no example picture '${req.params.file}'`,
        'not_found_error',
        'file',
        'not_found',
      );
    const type = found.file.endsWith('.png')
      ? 'image/png'
      : found.file.endsWith('.webp')
        ? 'image/webp'
        : 'image/jpeg';
    return reply.type(type).send(readFileSync(join(engine.checkpoint.dir, 'examples', found.file)));
  });

  let pictureLen: Promise<number> | undefined;
  app.post('/v1/playground/runs', async (req, reply) => {
    admit(req);
    pictureLen ??= pictureTokens(engine);
    const plan = planRun(req.body, engine, ctx.engineOptions, ctx.container, await pictureLen);
    const busy = store.busy;
    if (busy)
      throw new HttpError(
        409,
        `comparison run ${busy.id} is still running; wait for it to finish (GET /v1/playground/runs/${busy.id})`,
        'conflict_error',
        null,
        'run_in_progress',
      );
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    const send = (e: RunEvent) => {
      if (!res.writableEnded && !res.destroyed) res.write(`data: ${JSON.stringify(e)}\n\n`);
    };
    // The run goes on if the page goes away; its results stay under GET /v1/playground/runs/:id.
    store.start(plan, (e) => {
      send(e);
      if (e.type === 'done' && !res.writableEnded) res.end('data: [DONE]\n\n');
    });
  });

  app.get('/v1/playground/runs', async (req) => {
    admit(req);
    return { runs: store.list() };
  });

  app.delete<{ Params: { id: string } }>('/v1/playground/runs/:id', async (req) => {
    admit(req);
    const run = store.get(req.params.id);
    if (!run) throw new HttpError(404, `no run '${req.params.id}'`, 'not_found_error', 'id', 'not_found');
    if (!store.cancel(run.id))
      throw new HttpError(
        409,
        `run ${run.id} is not running (it is ${run.status})`,
        'conflict_error',
        'id',
        'not_running',
      );
    return { id: run.id, status: 'cancelling' };
  });

  app.get<{ Params: { id: string } }>('/v1/playground/runs/:id', async (req) => {
    admit(req);
    const run = store.get(req.params.id);
    if (!run)
      throw new HttpError(
        404,
        `no run '${req.params.id}' (the server keeps the newest ${ctx.maxRuns ?? 16})`,
        'not_found_error',
        'id',
        'not_found',
      );
    return run;
  });
}

/** An example picture of the model folder and, where `demo_reference.json` has one, its question. */
export interface Example {
  file: string;
  question?: string;
  answer?: string;
}

interface Reference {
  chat?: { image?: string; messages?: { content?: unknown }[]; generated_text?: string }[];
}

/** The questions of `<model>/demo_reference.json` (its last user turns), with their pictures. */
function referenceQuestions(modelDir: string): { image?: string; question: string; answer?: string }[] {
  let ref: Reference;
  try {
    ref = JSON.parse(readFileSync(join(modelDir, 'demo_reference.json'), 'utf8'));
  } catch {
    return []; // No reference file (or an unreadable one): no questions to offer.
  }
  return (ref.chat ?? []).flatMap((c) => {
    const parts = c.messages?.at(-1)?.content;
    const question = Array.isArray(parts)
      ? parts.find((p): p is { text: string } => typeof p?.text === 'string')?.text
      : typeof parts === 'string'
        ? parts
        : undefined;
    return question ? [{ image: c.image?.split('/').pop(), question, answer: c.generated_text }] : [];
  });
}

/** The pictures in `<model>/examples/`, with the questions `demo_reference.json` asks about them. */
export function examples(modelDir: string): Example[] {
  const dir = join(modelDir, 'examples');
  if (!existsSync(dir)) return [];
  const byImage = new Map(referenceQuestions(modelDir).map((q) => [q.image, q]));
  return readdirSync(dir)
    .filter((f) => /\.(png|jpe?g|webp)$/i.test(f))
    .sort()
    .map((file) => {
      const q = byImage.get(file);
      return q ? { file, question: q.question, answer: q.answer } : { file };
    });
}

/** Every distinct question of the model's reference file, in its order (text models have some too). */
export function exampleQuestions(modelDir: string): string[] {
  return [...new Set(referenceQuestions(modelDir).map((q) => q.question))];
}
