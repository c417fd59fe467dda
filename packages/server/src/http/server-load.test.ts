import type { AddressInfo } from 'node:net';
import type { Engine } from '@switchyard/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL } from '../cli.js';
import { createEngine } from '../create-engine.js';
import { buildServer, type Server } from './app.js';

/** Raw prompts whose greedy answers run 5 to 24 tokens, some ending at EOS and some at max_tokens. */
const PROMPTS = [
  'The os module',
  'def main():',
  'Return the absolute value of',
  'import sys\n',
  'A list of',
  'Which module defines',
  'What does',
  'os.path',
];
const MAX_TOKENS = 24;
const CLIENTS = 200;
/** Every ABORT_EVERY-th client hangs up after 2 or 3 chunks. */
const ABORT_EVERY = 4;
/** No client waits longer than this for its stream (the test fails rather than hangs). */
const CLIENT_DEADLINE_MS = 60_000;

interface Solo {
  ids: number[];
  text: string;
}

interface ClientResult {
  client: number;
  prompt: number;
  status: number;
  chunks: number;
  text: string;
  finish: string | null;
  /** Saw `data: [DONE]`. */
  done: boolean;
  /** This client hung up on purpose after `chunks` chunks. */
  aborted: boolean;
  /** The client deadline ran out. */
  timedOut: boolean;
  /** An `{"error": ...}` event inside the stream. */
  streamError?: unknown;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One gauge's value from the Prometheus text (undefined when absent). */
function gauge(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`switchyard:${name}{`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** A streaming /v1/completions client with its own SSE parsing; `abortAfter` chunks, it hangs up. */
async function streamOne(
  base: string,
  client: number,
  prompt: number,
  abortAfter: number | undefined,
): Promise<ClientResult> {
  const controller = new AbortController();
  const result: ClientResult = {
    client,
    prompt,
    status: 0,
    chunks: 0,
    text: '',
    finish: null,
    done: false,
    aborted: false,
    timedOut: false,
  };
  const deadline = setTimeout(() => {
    result.timedOut = true;
    controller.abort();
  }, CLIENT_DEADLINE_MS);
  try {
    const res = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        prompt: PROMPTS[prompt],
        max_tokens: MAX_TOKENS,
        temperature: 0,
        stream: true,
      }),
      signal: controller.signal,
    });
    result.status = res.status;
    if (!res.ok || !res.body) {
      result.streamError = await res.text();
      return result;
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    reading: while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end = buffer.indexOf('\n\n');
      while (end >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf('\n\n');
        const data = event
          .split('\n')
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n');
        if (data === '[DONE]') {
          result.done = true;
          continue;
        }
        const chunk = JSON.parse(data);
        if (chunk.error) {
          result.streamError = chunk.error;
          continue;
        }
        result.chunks++;
        result.text += chunk.choices[0]?.text ?? '';
        result.finish = chunk.choices[0]?.finish_reason ?? result.finish;
        if (abortAfter !== undefined && result.chunks >= abortAfter && !result.done) {
          result.aborted = true;
          controller.abort();
          break reading;
        }
      }
    }
  } catch (e) {
    // The planned hang-up (and the deadline) surface here as AbortError; anything else is a failure.
    if (!result.aborted && !result.timedOut) result.streamError = String(e);
  } finally {
    clearTimeout(deadline);
  }
  return result;
}

describe('the HTTP server under a burst of concurrent streams with client hang-ups', () => {
  let engine: Engine;
  let server: Server;
  let base: string;
  const solo: Solo[] = [];

  beforeAll(async () => {
    engine = await createEngine({ model: DEMO_MODEL, checkIntegrity: true });
    server = buildServer({ engine });
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = server.app.server.address() as AddressInfo;
    base = `http://127.0.0.1:${port}`;
    // Each prompt alone first: the reference every batched completion must reproduce.
    for (const prompt of PROMPTS) {
      const [r] = await engine.generate([{ prompt, sampling: { temperature: 0, maxTokens: MAX_TOKENS } }]);
      solo.push({ ids: r.outputs[0].tokenIds, text: r.outputs[0].text });
    }
  }, 60_000);

  afterAll(async () => {
    await server?.drain(1000);
  });

  it('the reference prompts are distinct and long enough to be hung up on', () => {
    expect(new Set(PROMPTS).size).toBe(PROMPTS.length);
    for (const s of solo) {
      // A hang-up after 3 chunks must come before the stream's end.
      expect(s.ids.length).toBeGreaterThanOrEqual(4);
      expect(s.ids.length).toBeLessThanOrEqual(MAX_TOKENS);
    }
    // Distinct answers, some stopped by EOS and some by max_tokens: the comparison below covers both.
    expect(new Set(solo.map((s) => s.text)).size).toBe(PROMPTS.length);
    expect(solo.some((s) => s.ids.length < MAX_TOKENS)).toBe(true);
    expect(solo.some((s) => s.ids.length === MAX_TOKENS)).toBe(true);
  });

  it('answers 200 concurrent streams exactly as each prompt alone, survives hang-ups, and frees everything', async () => {
    const tokensBefore = engine.stats().numGenerationTokens;
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: CLIENTS }, (_, i) => {
        const abortAfter =
          i % ABORT_EVERY === ABORT_EVERY - 1 ? 2 + (Math.floor(i / ABORT_EVERY) % 2) : undefined;
        // Rotate the prompt per group of 8 so hang-ups hit every prompt, not only two.
        return streamOne(base, i, (i + Math.floor(i / PROMPTS.length)) % PROMPTS.length, abortAfter);
      }),
    );
    const burstMs = performance.now() - started;

    expect(results.filter((r) => r.timedOut)).toEqual([]);
    expect(results.filter((r) => r.streamError !== undefined)).toEqual([]);
    expect(results.every((r) => r.status === 200)).toBe(true);

    const completed = results.filter((r) => r.done);
    const hungUp = results.filter((r) => r.aborted);
    expect(hungUp.length).toBe(CLIENTS / ABORT_EVERY);
    expect(completed.length).toBe(CLIENTS - CLIENTS / ABORT_EVERY);
    for (const r of completed) {
      const ref = solo[r.prompt];
      expect({ client: r.client, text: r.text }).toEqual({ client: r.client, text: ref.text });
      expect(r.chunks).toBe(ref.ids.length);
      expect(r.finish).toBe(ref.ids.length < MAX_TOKENS ? 'stop' : 'length');
    }
    // What a hung-up client saw before leaving is the start of the same answer.
    for (const r of hungUp) {
      expect(r.chunks).toBeGreaterThanOrEqual(2);
      expect(solo[r.prompt].text.startsWith(r.text)).toBe(true);
    }

    // Hang-ups stop generation early: fewer tokens were made than 200 full answers would take.
    const fullTokens = results.reduce((n, r) => n + solo[r.prompt].ids.length, 0);
    const madeTokens = () => engine.stats().numGenerationTokens - tokensBefore;

    // The server is still up.
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });

    // Hang-ups are noticed asynchronously: poll the gauges until everything is released.
    let metrics = '';
    const until = Date.now() + 5000;
    for (let i = 0; i < 100 && Date.now() < until; i++) {
      metrics = await (await fetch(`${base}/metrics`)).text();
      if (
        gauge(metrics, 'num_requests_running') === 0 &&
        gauge(metrics, 'num_requests_waiting') === 0 &&
        gauge(metrics, 'kv_cache_used_blocks') === 0
      )
        break;
      await sleep(50);
    }
    expect(gauge(metrics, 'num_requests_running')).toBe(0);
    expect(gauge(metrics, 'num_requests_waiting')).toBe(0);
    expect(gauge(metrics, 'kv_cache_used_blocks')).toBe(0);
    expect(gauge(metrics, 'request_failure_total')).toBe(0);
    expect(engine.numUnfinished()).toBe(0);
    expect(() => engine.kv.checkIntegrity()).not.toThrow();
    expect(madeTokens()).toBeLessThan(fullTokens);

    // And it still answers a fresh request exactly.
    const again = await streamOne(base, CLIENTS, 0, undefined);
    expect(again.done).toBe(true);
    expect(again.text).toBe(solo[0].text);

    const tokens = completed.reduce((n, r) => n + r.chunks, 0);
    console.log(
      `load: ${CLIENTS} streams (${hungUp.length} hung up) in ${burstMs.toFixed(0)} ms; ` +
        `${tokens} tokens to completed clients, ${madeTokens()} generated of ${fullTokens} without hang-ups; ` +
        `peak KV ${(engine.stats().kvPeakUsage * 100).toFixed(1)}%`,
    );
  }, 120_000);
});
