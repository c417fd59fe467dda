import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createContainer, type EngineOptions } from '@switchyard/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register as registerPrefillFirst } from '../../../../../docs/examples/prefill-first-scheduler.js';
import { makeWorkload, runWorkload } from '../../bench.js';
import { DEMO_MODEL, DEMO_VISION_MODEL } from '../../cli.js';
import { createEngine, registerBuiltins } from '../../create-engine.js';
import { buildServer, type Server } from '../app.js';
import { examples } from './playground.js';
import type { ConfigResult } from './playground-runs.js';

const BIN = join(import.meta.dirname, '..', '..', '..', 'dist', 'bin.js');

/** Reads a run's server-sent events to the end. */
async function events(res: Response): Promise<{ type: string; [k: string]: unknown }[]> {
  const text = await res.text();
  return text
    .split('\n\n')
    .map((e) => e.replace(/^data: /, ''))
    .filter((e) => e && e !== '[DONE]')
    .map((e) => JSON.parse(e));
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${url}/v1/playground/runs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

const SMALL = {
  workload: 'shared-prefix',
  num_requests: 6,
  input_len: 8,
  output_len: 4,
  shared_prefix_len: 32,
  num_prefixes: 2,
  seed: 5,
};

describe('the playground API', () => {
  let server: Server;
  let url: string;
  const staticDir = mkdtempSync(join(tmpdir(), 'switchyard-static-'));
  writeFileSync(join(staticDir, 'index.html'), '<!doctype html><title>playground</title>');
  const engineOptions: EngineOptions = { model: DEMO_VISION_MODEL };

  beforeAll(async () => {
    const container = registerBuiltins(createContainer());
    const engine = await createEngine({ ...engineOptions, container });
    server = buildServer({ engine, playground: { engineOptions, container, staticDir, maxRuns: 2 } });
    url = await server.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(() => server.drain(1000));

  it('serves the page at / and the parts it may offer', async () => {
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>playground</title>');
    const info = await (await fetch(`${url}/v1/playground/info`)).json();
    expect(info).toMatchObject({
      model: 'switchyard-demo-vision',
      multimodal: true,
      schedulers: ['continuous', 'fcfs'],
      attentions: ['paged', 'radix'],
      policies: ['fcfs', 'lpm', 'priority'],
      workloads: ['random', 'shared-prefix', 'multi-turn', 'images'],
    });
    expect(info.engine.device).toBe('cpu');
  });

  it("lists the model folder's example pictures with demo_reference.json's questions, and serves them", async () => {
    const { examples: list } = await (await fetch(`${url}/v1/playground/examples`)).json();
    const ref = JSON.parse(readFileSync(join(DEMO_VISION_MODEL, 'demo_reference.json'), 'utf8'));
    expect(list.length).toBeGreaterThan(0);
    for (const c of ref.chat) {
      const file = c.image.split('/').pop();
      expect(list.find((e: { file: string }) => e.file === file)?.question).toBe(
        c.messages[0].content[1].text,
      );
    }
    const png = await fetch(`${url}/v1/playground/examples/${list[0].file}`);
    expect(png.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await png.arrayBuffer())).toEqual(
      readFileSync(join(DEMO_VISION_MODEL, 'examples', list[0].file)),
    );
    expect((await fetch(`${url}/v1/playground/examples/..%2Fconfig.json`)).status).toBe(404);
    expect(examples(tmpdir())).toEqual([]);
  });

  it.each([
    [{ configs: [] }, 'configs'],
    [{ configs: [{ scheduler: 'sjf' }] }, 'configs[0].scheduler'],
    [{ configs: [{}, { attention: 'naive' }] }, 'configs[1].attention'],
    [{ configs: [{ policy: 'lifo' }] }, 'configs[0].policy'],
    [{ configs: [{ block_size: 0 }] }, 'configs[0].block_size'],
    [{ configs: [{ max_num_seqs: 1.5 }] }, 'configs[0].max_num_seqs'],
    [{ configs: [{ max_num_batched_tokens: 'many' }] }, 'configs[0].max_num_batched_tokens'],
    [{ configs: [{ enable_prefix_caching: 'yes' }] }, 'configs[0].enable_prefix_caching'],
    [
      { configs: [{ enable_chunked_prefill: false, max_num_batched_tokens: 64 }] },
      'configs[0].max_num_batched_tokens',
    ],
    [{ configs: [{ kv_cache_tokens: 32 }], workload: SMALL }, 'configs[0].kv_cache_tokens'],
    [{ configs: [{ swap_space: 4 }] }, 'configs[0].swap_space'],
    [{ configs: [{ kv_cache_tokens: 1 << 24 }] }, 'configs[0].kv_cache_tokens'],
    [{ configs: [{ block_size: 4096 }] }, 'configs[0].block_size'],
    [{ configs: [{}], workload: { workload: 'sharegpt' } }, 'workload.workload'],
    [{ configs: [{}], workload: { num_requests: 0 } }, 'workload.num_requests'],
    [{ configs: [{}], workload: { input_len: 2000 } }, 'configs[0].kv_cache_tokens'],
    [{ configs: [{}], workload: { request_rate: -1 } }, 'workload.request_rate'],
  ])('refuses %j with a 400 naming %s', async (body, param) => {
    const res = await post(url, body);
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error.param).toBe(param);
    expect(error.message).toContain(param.replace(/^configs$/, 'configs'));
  });

  it('runs configs one after another, reports what switchyard bench reports, and keeps the run', async () => {
    const res = await post(url, {
      configs: [
        { name: 'a', scheduler: 'fcfs', attention: 'paged' },
        { name: 'b', scheduler: 'continuous', attention: 'radix', block_size: 8 },
      ],
      workload: SMALL,
    });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const evs = await events(res);
    expect(evs.map((e) => e.type).filter((t) => t !== 'progress')).toEqual([
      'start',
      'config-start',
      'config-done',
      'config-start',
      'config-done',
      'done',
    ]);
    const results = evs.filter((e) => e.type === 'config-done').map((e) => e.result as ConfigResult);
    // The same engine and workload built here directly give the same token counts and prefix hits.
    for (const [i, r] of results.entries()) {
      expect(r.requests).toBe(6);
      expect(r.cdf.ttft_ms).toHaveLength(101);
      expect(r.timeline.t_ms.length).toBeGreaterThan(1);
      expect(r.engine).toMatchObject({
        scheduler: i ? 'continuous' : 'fcfs',
        attention: i ? 'radix' : 'paged',
      });
      const engine = await createEngine({
        model: DEMO_VISION_MODEL,
        scheduler: r.engine.scheduler,
        attention: r.engine.attention,
        blockSize: r.engine.blockSize,
      });
      const w = makeWorkload({
        workload: 'shared-prefix',
        numRequests: 6,
        inputLen: 8,
        outputLen: 4,
        rangeRatio: 0,
        sharedPrefixLen: 32,
        numPrefixes: 2,
        requestRate: Number.POSITIVE_INFINITY,
        seed: 5,
        vocabSize: engine.info.vocabSize,
        imageTokenId: engine.spec.multimodal?.placeholderTokenId,
      });
      const { results: direct } = await runWorkload(engine, w);
      expect(r.prefix_hit_rate).toBe(engine.stats().prefixHitRate);
      expect(r.total_tok_s * r.duration_s).toBeCloseTo(
        direct.reduce((a, d) => a + d.usage.promptTokens + 4, 0),
        6,
      );
      await engine.close();
    }
    expect(results[1].cli).toContain('--scheduler continuous --attention radix');
    expect(results[1].cli).toContain('--block-size 8');
    const id = (evs[0] as { id: string }).id;
    const kept = await (await fetch(`${url}/v1/playground/runs/${id}`)).json();
    expect(kept).toMatchObject({ id, status: 'done', request: { configs: [{ name: 'a' }, { name: 'b' }] } });
    expect((await fetch(`${url}/v1/playground/runs/nope`)).status).toBe(404);
  });

  it('refuses a second run while one is running (409), and keeps only the newest runs', async () => {
    const long = post(url, { configs: [{}], workload: { ...SMALL, num_requests: 48, output_len: 32 } });
    const first = await long;
    const second = await post(url, { configs: [{}], workload: SMALL });
    expect(second.status).toBe(409);
    expect((await second.json()).error.message).toMatch(/still running/);
    await events(first);
    for (let i = 0; i < 2; i++) await events(await post(url, { configs: [{}], workload: SMALL }));
    const { runs } = await (await fetch(`${url}/v1/playground/runs`)).json();
    expect(runs).toHaveLength(2);
  });

  it('cancels a running run: its requests are aborted, later configs skipped, the next run accepted', async () => {
    const res = await post(url, {
      configs: [{}, {}],
      workload: { ...SMALL, num_requests: 64, output_len: 200 },
    });
    const reading = events(res);
    // Wait until the first config is under way, then cancel.
    let id: string | undefined;
    while (!id) {
      const { runs } = await (await fetch(`${url}/v1/playground/runs`)).json();
      id = runs.find((r: { status: string }) => r.status === 'running')?.id;
    }
    const cancel = await fetch(`${url}/v1/playground/runs/${id}`, { method: 'DELETE' });
    expect(cancel.status).toBe(200);
    const evs = await reading;
    expect(evs.filter((e) => e.type === 'error').map((e) => e.message)).toEqual([
      'the run was cancelled',
      'the run was cancelled',
    ]);
    expect(evs.at(-1)).toMatchObject({ type: 'done', status: 'cancelled' });
    expect((await fetch(`${url}/v1/playground/runs/${id}`, { method: 'DELETE' })).status).toBe(409);
    expect((await fetch(`${url}/v1/playground/runs/nope`, { method: 'DELETE' })).status).toBe(404);
    const next = await events(await post(url, { configs: [{}], workload: SMALL }));
    expect(next.at(-1)).toMatchObject({ type: 'done', status: 'done' });
  });

  it('runs the multi-turn and images workloads', async () => {
    for (const workload of ['multi-turn', 'images']) {
      const evs = await events(
        await post(url, {
          configs: [{}],
          workload: { workload, num_requests: 4, input_len: 24, output_len: 4, num_turns: 2, num_images: 2 },
        }),
      );
      const done = evs.find((e) => e.type === 'config-done') as {
        result: { requests: number; prefix_hit_rate: number };
      };
      expect(done.result.requests, workload).toBe(4);
      expect(done.result.prefix_hit_rate, workload).toBeGreaterThan(0);
    }
  });
});

describe('the playground switches', () => {
  it('needs the API key when the server has one', async () => {
    const container = registerBuiltins(createContainer());
    const engine = await createEngine({ model: DEMO_VISION_MODEL, container });
    const server = buildServer({
      engine,
      apiKey: 'k',
      playground: { engineOptions: { model: DEMO_VISION_MODEL }, container, staticDir: tmpdir() },
    });
    const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      expect((await fetch(`${url}/v1/playground/info`)).status).toBe(401);
      expect(
        (await fetch(`${url}/v1/playground/info`, { headers: { authorization: 'Bearer k' } })).status,
      ).toBe(200);
      expect((await post(url, { configs: [{}] })).status).toBe(401);
      // No built page in that folder: / says how to build it.
      const page = await fetch(`${url}/`);
      expect(page.status).toBe(404);
      expect(await page.text()).toMatch(/npm run build/);
    } finally {
      await server.drain(1000);
    }
  });

  it('offers a scheduler registered by user code, and runs it; a text model gets questions, no pictures', async () => {
    const container = registerBuiltins(createContainer());
    registerPrefillFirst(container);
    const engine = await createEngine({ model: DEMO_MODEL, container });
    const server = buildServer({
      engine,
      playground: { engineOptions: { model: DEMO_MODEL }, container, staticDir: tmpdir() },
    });
    const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const info = await (await fetch(`${url}/v1/playground/info`)).json();
      expect(info.schedulers).toEqual(['continuous', 'fcfs', 'prefill-first']);
      expect(info.multimodal).toBe(false);
      const evs = await events(
        await post(url, { configs: [{ scheduler: 'prefill-first', attention: 'radix' }], workload: SMALL }),
      );
      const done = evs.find((e) => e.type === 'config-done') as { result: ConfigResult };
      expect(done.result.engine).toMatchObject({ scheduler: 'prefill-first', attention: 'radix' });
      expect(done.result.requests).toBe(6);
      const images = await post(url, { configs: [{}], workload: { workload: 'images' } });
      expect(images.status).toBe(400);
      expect((await images.json()).error.param).toBe('workload.workload');
      const ref = JSON.parse(readFileSync(join(DEMO_MODEL, 'demo_reference.json'), 'utf8'));
      const listed = await (await fetch(`${url}/v1/playground/examples`)).json();
      expect(listed.examples).toEqual([]);
      expect(listed.questions).toEqual([
        ...new Set(ref.chat.map((c: { messages: { content: string }[] }) => c.messages[0].content)),
      ]);
    } finally {
      await server.drain(1000);
    }
  });

  it('switchyard serve --no-playground serves neither the page nor its API', async () => {
    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--no-playground'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 20_000);
      child.stderr.on('data', (d) => {
        stderr += d;
        const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
    });
    try {
      for (const path of ['/', '/v1/playground/info']) {
        const res = await fetch(`${url}${path}`);
        expect(res.status, path).toBe(404);
        expect((await res.json()).error.message).toBe(`no route GET ${path}`);
      }
      expect((await fetch(`${url}/v1/models`)).status).toBe(200);
    } finally {
      child.kill('SIGINT');
    }
  }, 30_000);
});
