import { execFileSync, spawnSync } from 'node:child_process';
import {
  Checkpoint,
  createContainer,
  type Engine,
  type IsolatedExecutor,
  type StreamEvent,
} from '@switchyard/core';
import { fixture, fixtureTitle } from '@switchyard/core/testing';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { builtinsModule, createEngine, registerBuiltins } from './create-engine.js';
import { buildServer } from './http/app.js';
import { startCli } from './http/hostile-helpers.js';
// @ts-expect-error: a plain JS module (the child process imports it as it is)
import { CRASHING_DEVICE, register as registerCrashing } from './testdata/crashing-backend.mjs';

/**
 * The executor in a child process (executorIsolation 'process'): a backend that crashes its own
 * process with a real signal when a step holds CRASH_TOKEN stands in for a segfault in ONNX Runtime.
 * The crash must fail that step's requests (and every request holding KV) with a clear error,
 * restart the process, and leave the engine serving transformers' greedy ids.
 */
const fx = fixture('qwen2-tiny');
/** In no prompt of the fixture, and never sampled by the greedy runs below. */
const CRASH_TOKEN = 1999;
const CRASHING_MODULE = new URL('./testdata/crashing-backend.mjs', import.meta.url).href;
const DIED =
  /the executor process died \(signal (SIGSEGV|SIGABRT|SIGKILL)\) during a step; its requests failed and the executor was restarted/;

type Isolation = 'thread' | 'process';

function crashingEngine(
  crashWith: string,
  { isolation = 'process' as Isolation, maxRestarts = 3 } = {},
): Promise<Engine> {
  const container = registerBuiltins(createContainer());
  registerCrashing(container);
  return createEngine({
    model: fx.dir,
    device: CRASHING_DEVICE,
    container,
    checkIntegrity: true,
    kvCacheTokens: 1024,
    settings: { crashToken: CRASH_TOKEN, crashWith },
    executorIsolation: isolation,
    executorThread: { modules: [builtinsModule(), CRASHING_MODULE], maxRestarts },
  });
}

const crashRequest = (maxTokens = 4) => ({ promptIds: [1, 85, CRASH_TOKEN, 91], sampling: { maxTokens } });

/** Waits until `engine.health()` is ok again (the restarted process has loaded the model). */
async function healthy(engine: Engine): Promise<void> {
  for (let i = 0; i < 400 && engine.health().status !== 'ok'; i++)
    await new Promise((r) => setTimeout(r, 25));
  expect(engine.health().status).toBe('ok');
}

/** Runs a request to its end; resolves with its error, or undefined when it finished. */
async function outcome(events: AsyncIterable<StreamEvent>): Promise<Error | undefined> {
  try {
    for await (const _ of events);
  } catch (e) {
    return e as Error;
  }
  return undefined;
}

/** Starts the fixture's chat prompts as long greedy streams; resolves once every one has a token (they are running). */
async function runningStreams(engine: Engine, n: number) {
  const ref = fx.reference();
  const results = ref.chat.slice(0, n).map(async (c) => {
    const events = engine.stream({ promptIds: c.prompt_ids!, sampling: { maxTokens: 400, ignoreEos: true } });
    const first = await events.next();
    return { first, done: outcome(events) };
  });
  return Promise.all(results);
}

const pidOf = (engine: Engine) => (engine.executor as IsolatedExecutor).pid;

describe.skipIf(fx.missing)(fixtureTitle(fx, 'the executor in a process of its own'), () => {
  let engine: Engine | undefined;
  afterEach(async () => {
    await engine?.close();
    engine = undefined;
  });

  it.each(['SIGSEGV', 'SIGABRT'])(
    'a %s in a step fails that step and every request holding KV, restarts the process, and serves transformers ids after',
    async (signal) => {
      engine = await crashingEngine(signal);
      const ref = fx.reference();
      const pid = pidOf(engine);
      // Two requests decoding, then the crashing one joins their step.
      const running = await runningStreams(engine, 2);
      const crashed = await engine.generate([crashRequest()]).catch((e: Error) => e);
      expect((crashed as Error).message).toMatch(DIED);
      expect((crashed as Error).message).toContain(`signal ${signal}`);
      for (const r of running) expect((await r.done)?.message).toMatch(DIED);
      // The pool lived in the dead process: nothing refers to it any more.
      const usage = engine.kv.usage();
      expect([usage.numUsedBlocks, usage.numCachedBlocks]).toEqual([0, 0]);
      engine.kv.checkIntegrity();
      await healthy(engine);
      expect(pidOf(engine)).not.toBe(pid);
      expect(engine.health().numRestarts).toBe(1);
      // The same prompts again (a prefix pointing into the lost pool would give other ids).
      const again = await engine.generate(
        ref.chat.map((c) => ({ promptIds: c.prompt_ids!, sampling: { maxTokens: c.generated_ids.length } })),
      );
      again.forEach((r, i) => {
        expect(r.outputs[0].tokenIds).toEqual(ref.chat[i].generated_ids);
      });
      expect(engine.stats().numRequestsFailed).toBe(3);
    },
    30_000,
  );

  it('stops restarting after maxRestarts deaths in the window: every request then fails saying so, /health 503', async () => {
    engine = await crashingEngine('SIGSEGV', { maxRestarts: 1 });
    await expect(engine.generate([crashRequest()])).rejects.toThrow(DIED);
    await healthy(engine);
    const down =
      /died \(signal SIGSEGV\) during a step: 2 deaths within 300 s, so the executor keeps crashing and is not restarted again/;
    await expect(engine.generate([crashRequest()])).rejects.toThrow(down);
    expect(engine.health()).toMatchObject({ status: 'failed', numRestarts: 1 });
    // A new request is refused at once, with the reason and what to check.
    const ref = fx.reference();
    await expect(engine.generate([{ promptIds: ref.chat[0].prompt_ids! }])).rejects.toThrow(
      /keeps crashing.*Check the server's log/,
    );
    const server = buildServer({ engine });
    const health = await server.app.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(503);
    expect(health.json()).toMatchObject({ status: 'executor_failed', reason: expect.stringMatching(down) });
    await server.app.close();
  }, 30_000);

  it.each(['process', 'thread'] as const)(
    'on a %s, a plain JS error in a step fails just that step: no restart, the next request runs',
    async (isolation) => {
      engine = await crashingEngine('throw', { isolation });
      const pid = pidOf(engine);
      await expect(engine.generate([crashRequest()])).rejects.toThrow(
        /failed in the model step: the crashing backend threw on purpose/,
      );
      expect(engine.health()).toEqual({ status: 'ok', numRestarts: 0 });
      expect(pidOf(engine)).toBe(pid);
      const c = fx.reference().chat[1];
      const [r] = await engine.generate([{ promptIds: c.prompt_ids!, sampling: { maxTokens: 12 } }]);
      expect(r.outputs[0].tokenIds).toEqual(c.generated_ids);
    },
    30_000,
  );

  it('on a thread, a thread that exits (exit code 3) fails its step the same way and is started again', async () => {
    engine = await crashingEngine('exit', { isolation: 'thread' });
    await expect(engine.generate([crashRequest()])).rejects.toThrow(
      /the executor thread died \(exit code 3\) during a step; its requests failed and the executor was restarted/,
    );
    await healthy(engine);
    expect(engine.health().numRestarts).toBe(1);
    const c = fx.reference().chat[0];
    const [r] = await engine.generate([{ promptIds: c.prompt_ids!, sampling: { maxTokens: 12 } }]);
    expect(r.outputs[0].tokenIds).toEqual(c.generated_ids);
  }, 30_000);

  it('refuses an isolation it does not know, naming the known ones', async () => {
    await expect(createEngine({ model: fx.dir, executorIsolation: 'fork' as never })).rejects.toThrow(
      "executorIsolation must be 'none', 'thread' or 'process', got \"fork\"",
    );
    const bin = new URL('../dist/bin.js', import.meta.url).pathname;
    const serve = (...args: string[]) =>
      spawnSync(process.execPath, [bin, 'serve', '--model', fx.dir, '--port', '0', ...args], {
        encoding: 'utf8',
      });
    const bad = serve('--executor-isolation', 'fork');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain("--executor-isolation must be none, thread or process, got 'fork'");
    const both = serve('--executor-isolation', 'process', '--no-executor-thread');
    expect(both.status).not.toBe(0);
    expect(both.stderr).toContain(
      '--executor-isolation process contradicts --no-executor-thread; give one of them',
    );
    const idle = serve('--executor-max-restarts', '2');
    expect(idle.status).not.toBe(0);
    expect(idle.stderr).toContain(
      '--executor-max-restarts applies to an executor on a thread or in a process',
    );
  });

  it('serves through a real server: the crashing request and a stream in its step fail clearly, /health and new requests answer', async () => {
    engine = await crashingEngine('SIGSEGV');
    const server = buildServer({ engine });
    const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const ref = fx.reference();
    try {
      const stream = await client.completions.create({
        model: 'qwen2-tiny',
        prompt: ref.chat[0].prompt_ids!,
        max_tokens: 400,
        temperature: 0,
        stream: true,
        ignore_eos: true, // vLLM's extension
      } as OpenAI.CompletionCreateParamsStreaming);
      const streamed = (async () => {
        for await (const _ of stream);
      })().catch((e: Error) => e);
      // The stream is decoding when the crashing request joins its step.
      for (let i = 0; i < 400 && engine.stats().numRunning === 0; i++)
        await new Promise((r) => setTimeout(r, 5));
      const crashed = await client.completions
        .create({ model: 'qwen2-tiny', prompt: [1, 85, CRASH_TOKEN, 91], max_tokens: 4 })
        .catch((e: Error) => e);
      expect(crashed).toBeInstanceOf(OpenAI.InternalServerError);
      expect((crashed as Error).message).toMatch(DIED);
      expect(((await streamed) as Error).message).toMatch(DIED);
      let health: Response;
      for (let i = 0; i < 400; i++) {
        health = await fetch(`${url}/health`);
        if (health.status === 200) break;
        expect(health.status).toBe(503);
        expect(((await health.json()) as { status: string }).status).toBe('executor_restarting');
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(health!.status).toBe(200);
      expect(await (await fetch(`${url}/metrics`)).text()).toContain(
        'switchyard:executor_restarts_total{model_name="qwen2-tiny"} 1',
      );
      const c = ref.chat[2];
      const r = await client.completions.create({
        model: 'qwen2-tiny',
        prompt: c.prompt_ids!,
        max_tokens: c.generated_ids.length,
        temperature: 0,
      });
      expect(r.choices[0].text).toBe(engine.tokenizer.decode(c.generated_ids, false));
    } finally {
      await server.app.close();
    }
  }, 30_000);

  it('the real CLI with --executor-isolation process: a child killed by SIGKILL between steps loses no answer', async () => {
    const cli = await startCli(['--model', fx.dir, '--executor-isolation', 'process', '--no-log-requests']);
    const c = fx.reference().chat[0];
    const ask = async () => {
      const r = await fetch(`${cli.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: c.prompt_ids, max_tokens: c.generated_ids.length, temperature: 0 }),
      });
      expect(r.status).toBe(200);
      return ((await r.json()) as { choices: { text: string }[] }).choices[0].text;
    };
    try {
      const first = await ask();
      expect(first).toBe(Checkpoint.open(fx.dir).tokenizer.decode(c.generated_ids, false));
      const child = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(cli.pid)], { encoding: 'utf8' })
        .split('\n')
        .filter((line) => line.includes('executor-worker.js'))
        .map((line) => Number.parseInt(line, 10));
      expect(child).toHaveLength(1);
      process.kill(child[0], 'SIGKILL');
      let status = 0;
      for (let i = 0; i < 400 && status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 25));
        status = (await fetch(`${cli.url}/health`)).status;
      }
      expect(status).toBe(200);
      // Its prefix was cached in the dead process's pool: the same prompt is computed afresh.
      expect(await ask()).toBe(first);
      expect(cli.stderr()).not.toMatch(/Error/);
    } finally {
      cli.kill('SIGTERM');
      expect(await cli.exited).toBe(0);
    }
  }, 60_000);
});
