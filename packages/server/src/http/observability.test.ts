import { Writable } from 'node:stream';
import { type Engine, reportLoadProgress } from '@switchyard/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL } from '../cli.js';
import { createEngine } from '../create-engine.js';
import { showLoadProgress } from '../load-progress.js';
import { startStatsLogger, statsLine } from '../stats-logger.js';
import { buildServer, type Server, type ServerOptions } from './app.js';
import { buckets125 } from './prometheus.js';

/** A pino destination that keeps the JSON lines. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, stream };
}

const SECRET = 'def very_secret_function(x):';

describe('request log, metrics, stats line, load progress', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine({ model: DEMO_MODEL });
  });
  afterAll(() => engine.close());

  async function withServer(opts: Partial<ServerOptions>, f: (url: string, s: Server) => Promise<void>) {
    const server = buildServer({ engine, ...opts });
    const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      await f(url, server);
    } finally {
      await server.app.close();
    }
  }
  const complete = (url: string, body: object) =>
    fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).then((r) => r.json());

  it('writes one line per request with tokens and latencies, and no prompt text', async () => {
    const log = capture();
    await withServer({ logger: { level: 'info', stream: log.stream } }, async (url) => {
      const r = await complete(url, { prompt: SECRET, max_tokens: 4, ignore_eos: true });
      await complete(url, { prompt: SECRET, max_tokens: 2, user: 'u' });
      const lines = log.lines.filter((l) => l.msg === 'request');
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatchObject({
        level: 30,
        id: r.id.replace(/^cmpl-/, ''),
        route: '/v1/completions',
        prompt_tokens: r.usage.prompt_tokens,
        completion_tokens: 4,
        finish_reason: 'length',
      });
      expect(lines[0].ttft_ms).toBeGreaterThan(0);
      expect(lines[0].e2e_ms as number).toBeGreaterThanOrEqual(lines[0].ttft_ms as number);
      expect(JSON.stringify(log.lines)).not.toContain('very_secret');
      expect(
        log.lines.some((l) => l.level === 40 && String(l.msg).startsWith('user is accepted and ignored')),
      ).toBe(true);
    });
  });

  it('--log-prompts adds the prompt; --log-level warn keeps info lines out', async () => {
    const withPrompts = capture();
    await withServer(
      { logger: { level: 'info', stream: withPrompts.stream }, logPrompts: true },
      async (url) => {
        await complete(url, { prompt: SECRET, max_tokens: 1 });
      },
    );
    expect(withPrompts.lines.find((l) => l.msg === 'request')?.prompt).toEqual([SECRET]);
    const quiet = capture();
    await withServer({ logger: { level: 'warn', stream: quiet.stream } }, async (url) => {
      await complete(url, { prompt: SECRET, max_tokens: 1 });
      await complete(url, { prompt: SECRET, max_tokens: 'x' });
    });
    expect(quiet.lines.filter((l) => (l.level as number) < 40)).toEqual([]);
  });

  it('/metrics: vLLM names under switchyard:, finished_reason labels, token histograms, process metrics', async () => {
    await withServer({}, async (url) => {
      await complete(url, { prompt: SECRET, max_tokens: 3, ignore_eos: true, n: 2 });
      const eos = engine.checkpoint.eosTokenIds[0];
      await complete(url, { prompt: SECRET, max_tokens: 5, logit_bias: { [eos]: 100 } });
      const text = await (await fetch(`${url}/metrics`)).text();
      const value = (series: string) => {
        const line = text.split('\n').find((l) => l.startsWith(series));
        expect(line, series).toBeDefined();
        return Number(line!.split(' ').pop());
      };
      const m = 'model_name="switchyard-demo-text"';
      expect(value(`switchyard:request_success_total{${m},finished_reason="length"}`)).toBe(2);
      expect(value(`switchyard:request_success_total{${m},finished_reason="stop"}`)).toBe(1);
      expect(value(`switchyard:request_generation_tokens_count{${m}}`)).toBe(2);
      expect(value(`switchyard:request_generation_tokens_sum{${m}}`)).toBe(7);
      expect(value(`switchyard:request_generation_tokens_bucket{le="5",${m}}`)).toBe(1);
      expect(value(`switchyard:request_params_n_bucket{le="2",${m}}`)).toBe(2);
      expect(value(`switchyard:time_to_first_token_seconds_count{${m}}`)).toBe(2);
      expect(value(`switchyard:num_requests_running{${m}}`)).toBe(0);
      // A counter still at zero is exported, not left out.
      expect(value(`switchyard:request_failure_total{${m}}`)).toBe(0);
      expect(value('process_cpu_seconds_total')).toBeGreaterThan(0);
      expect(text).toContain('# TYPE switchyard:e2e_request_latency_seconds histogram');
      expect(text).toContain('nodejs_heap_size_used_bytes');
      // Counters mirror the engine's totals without double counting across scrapes.
      const before = value(`switchyard:prompt_tokens_total{${m}}`);
      const again = await (await fetch(`${url}/metrics`)).text();
      expect(again).toContain(`switchyard:prompt_tokens_total{${m}} ${before}`);
    });
    expect(buckets125(120)).toEqual([1, 2, 5, 10, 20, 50, 100]);
  });

  it('logs a vLLM-style stats line while busy', async () => {
    const line = statsLine(
      {
        ...engine.stats(),
        numPromptTokens: 300,
        numGenerationTokens: 120,
        numRunning: 2,
        numWaiting: 1,
        kvUsage: 0.25,
        prefixQueries: 200,
        prefixHits: 50,
      },
      { prompt: 100, generation: 20, queries: 100, hits: 0 },
      2,
    );
    expect(line).toBe(
      'Avg prompt throughput: 100.0 tokens/s, Avg generation throughput: 50.0 tokens/s, Running: 2 reqs, Waiting: 1 reqs, KV cache usage: 25.0%, Prefix cache hit rate: 50.0%',
    );
    const seen: string[] = [];
    const stop = startStatsLogger(engine, (l) => seen.push(l), 0.05);
    await engine.generate([{ prompt: SECRET, sampling: { maxTokens: 8, ignoreEos: true } }]);
    await new Promise((r) => setTimeout(r, 200));
    stop();
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.join('\n')).toMatch(/Avg generation throughput: [1-9]/);
    const n = seen.length;
    await new Promise((r) => setTimeout(r, 200));
    expect(seen.length).toBe(n);
  });

  it('shows loading progress: percentage lines off a TTY, a bar on one', async () => {
    const write = (tty: boolean) => {
      let out = '';
      const stream = Object.assign(
        new Writable({
          write(c, _e, cb) {
            out += c;
            cb();
          },
        }),
        { isTTY: tty },
      );
      return { stream, text: () => out };
    };
    const plain = write(false);
    const stop = showLoadProgress(plain.stream);
    for (let i = 0; i <= 8; i++) reportLoadProgress('converting weights', i, 8);
    const loaded = await createEngine({ model: DEMO_MODEL });
    await loaded.close();
    stop();
    const lines = plain.text().trim().split('\n');
    expect(lines.slice(0, 5)).toEqual([
      'switchyard: converting weights: 0%',
      'switchyard: converting weights: 25%',
      'switchyard: converting weights: 50%',
      'switchyard: converting weights: 75%',
      expect.stringMatching(/^switchyard: converting weights: 100% \(\d+\.\d s\)$/),
    ]);
    expect(lines).toContainEqual(expect.stringMatching(/^switchyard: opening the decoder session: 100%/));
    const tty = write(true);
    const stopTty = showLoadProgress(tty.stream);
    reportLoadProgress('quantizing', 1, 2);
    reportLoadProgress('quantizing', 2, 2);
    stopTty();
    expect(tty.text()).toContain(
      `\r\u001b[2Kswitchyard: [${'#'.repeat(15)}${'-'.repeat(15)}]  50% quantizing`,
    );
    expect(tty.text()).toMatch(/\[#{30}\] 100% quantizing \(\d+\.\d s\)\n$/);
  });
});
