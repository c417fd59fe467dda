import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GenerateRequest } from '@switchyard/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { benchReport, makeWorkload, summarize, type Workload, type WorkloadOptions } from './bench.js';
import { type HttpResult, httpBenchReport, runHttpBench } from './bench-http.js';

const FIRST_DELAY_MS = 30;
const TOKEN_DELAY_MS = 4;
/** First prompt ids that make the fake server misbehave (workload ids are never this small). */
const STREAM_ERROR = 0;
const HTTP_ERROR = 1;
const NO_DONE = 2;
const NO_USAGE = 3;

interface Seen {
  at: number;
  body: {
    model: string;
    prompt: number[];
    max_tokens: number;
    ignore_eos: boolean;
    stream: boolean;
    stream_options: { include_usage: boolean };
    temperature: number;
  };
  auth?: string;
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
const cachedFor = (promptLen: number) => Math.floor(promptLen / 4);

/** A fake OpenAI-compatible server: deterministic token chunks with small delays, usage, [DONE]. */
const seen: Seen[] = [];
let modelListings = 0;
let inFlight = 0;
let maxInFlight = 0;

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const at = performance.now();
  if (req.method === 'GET' && req.url === '/v1/models') {
    modelListings++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data: [{ id: 'fake-model' }, { id: 'other' }] }));
    return;
  }
  if (req.method !== 'POST' || req.url !== '/v1/completions') {
    res.writeHead(404).end();
    return;
  }
  let raw = '';
  for await (const part of req) raw += part;
  const body = JSON.parse(raw) as Seen['body'];
  seen.push({ at, body, auth: req.headers.authorization });
  const marker = body.prompt[0];
  if (marker === HTTP_ERROR) {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'bad prompt', type: 'BadRequestError', code: 400 } }));
    return;
  }
  inFlight++;
  maxInFlight = Math.max(maxInFlight, inFlight);
  try {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const event = (o: unknown) => `data: ${JSON.stringify(o)}\r\n\r\n`;
    const choice = (text: string, finish: string | null) => ({
      id: 'cmpl-1',
      object: 'text_completion',
      model: body.model,
      choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
    });
    await sleep(FIRST_DELAY_MS);
    // A chunk with no text and a comment line carry no token.
    res.write(event(choice('', null)));
    res.write(': keep-alive\n\n');
    for (let i = 0; i < body.max_tokens; i++) {
      if (i > 0) await sleep(TOKEN_DELAY_MS);
      if (marker === STREAM_ERROR && i === 2) {
        res.write(event({ error: { message: 'boom', type: 'InternalServerError', code: 500 } }));
        res.end('data: [DONE]\n\n');
        return;
      }
      // Split each event across two writes to exercise the client's line buffering.
      const e = event(choice(`t${i} `, i === body.max_tokens - 1 ? 'length' : null));
      const cut = Math.floor(e.length / 2);
      res.write(e.slice(0, cut));
      await sleep(1);
      res.write(e.slice(cut));
    }
    if (marker === NO_DONE) {
      res.end();
      return;
    }
    if (marker !== NO_USAGE) {
      const promptTokens = body.prompt.length;
      res.write(
        event({
          id: 'cmpl-1',
          object: 'text_completion',
          model: body.model,
          choices: [],
          usage: {
            prompt_tokens: promptTokens,
            completion_tokens: body.max_tokens,
            total_tokens: promptTokens + body.max_tokens,
            prompt_tokens_details: { cached_tokens: cachedFor(promptTokens) },
          },
        }),
      );
    }
    res.end('data: [DONE]\n\n');
  } finally {
    inFlight--;
  }
}

const server = createServer((req, res) => {
  handle(req, res).catch(() => res.destroy());
});
let url = '';
beforeAll(async () => {
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((res) => server.close(res));
});
beforeEach(() => {
  seen.length = 0;
  modelListings = 0;
  maxInFlight = 0;
});

const workloadOf = (o: Partial<WorkloadOptions>): Workload =>
  makeWorkload({
    workload: 'random',
    numRequests: 8,
    inputLen: 16,
    outputLen: 6,
    rangeRatio: 0.5,
    sharedPrefixLen: 0,
    numPrefixes: 1,
    requestRate: Number.POSITIVE_INFINITY,
    seed: 7,
    vocabSize: 1000,
    ...o,
  });
const maxTokensOf = (r: GenerateRequest) => r.sampling!.maxTokens!;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
/** The server-side record of the request with these prompt ids. */
const seenFor = (r: GenerateRequest) => {
  const hit = seen.find((s) => JSON.stringify(s.body.prompt) === JSON.stringify(r.promptIds));
  if (!hit) throw new Error(`request ${r.id} never reached the server`);
  return hit;
};

describe('runHttpBench', { timeout: 3000 }, () => {
  it('replays every request as a streamed token-id completion and times its chunks', async () => {
    const w = workloadOf({});
    const { results, durationS } = await runHttpBench(url, w, {});
    expect(results).toHaveLength(8);
    expect(modelListings).toBe(1);
    expect(seen).toHaveLength(8);
    w.requests.forEach((r, i) => {
      const s = seenFor(r);
      expect(s.body).toEqual({
        model: 'fake-model',
        prompt: r.promptIds,
        max_tokens: maxTokensOf(r),
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
        temperature: 0,
      });
      expect(s.auth).toBeUndefined();
      const x = results[i];
      expect(x.error).toBeUndefined();
      expect(x.promptTokens).toBe(r.promptIds!.length);
      expect(x.completionTokens).toBe(maxTokensOf(r));
      expect(x.cachedTokens).toBe(cachedFor(r.promptIds!.length));
      // One gap between each pair of token chunks; the empty-text chunk is not a token.
      expect(x.itlMs).toHaveLength(maxTokensOf(r) - 1);
      expect(x.ttftMs).toBeGreaterThanOrEqual(FIRST_DELAY_MS - 1);
      for (const gap of x.itlMs) expect(gap).toBeGreaterThanOrEqual(0);
      expect(summarize(x.itlMs).p50).toBeLessThan(x.ttftMs);
      expect(x.e2eMs).toBeGreaterThanOrEqual(x.ttftMs + sum(x.itlMs) - 1e-6);
      expect(x.e2eMs / 1000).toBeLessThanOrEqual(durationS);
    });
    // Rate inf: everything is sent at once.
    const at = seen.map((s) => s.at);
    expect(Math.max(...at) - Math.min(...at)).toBeLessThan(100);
    expect(durationS).toBeLessThan(1.5);

    const report = httpBenchReport(results, durationS);
    expect(Object.keys(report).sort()).toEqual(
      [...Object.keys(benchReport([], 1)), 'failed', 'prefix_hit_rate'].sort(),
    );
    const prompt = sum(w.requests.map((r) => r.promptIds!.length));
    const out = sum(w.requests.map(maxTokensOf));
    expect(report.requests).toBe(8);
    expect(report.failed).toBe(0);
    expect(report.duration_s).toBe(durationS);
    expect(report.output_tok_s * durationS).toBeCloseTo(out, 6);
    expect(report.total_tok_s * durationS).toBeCloseTo(out + prompt, 6);
    expect(report.prefix_hit_rate).toBeCloseTo(
      sum(w.requests.map((r) => cachedFor(r.promptIds!.length))) / prompt,
      12,
    );
    expect(report.ttft_ms).toEqual(summarize(results.map((r) => r.ttftMs)));
    expect(report.itl_ms).toEqual(summarize(results.flatMap((r) => r.itlMs)));
    expect(report.ttft_ms.mean).toBeGreaterThan(report.itl_ms.mean);
    expect(report.tpot_ms.mean).toBeGreaterThan(0);
  });

  it('sends each request at its Poisson arrival time', async () => {
    const w = workloadOf({ numRequests: 6, outputLen: 2, rangeRatio: 0, requestRate: 12, seed: 3 });
    const last = w.arrivals[w.arrivals.length - 1];
    expect(last).toBeGreaterThan(0.15); // the seed spreads them out enough to see
    expect(last).toBeLessThan(1.2);
    // With the model named, the run's clock starts as the call is made (same clock as the server's).
    const start = performance.now();
    const { results, durationS } = await runHttpBench(url, w, { model: 'm' });
    expect(results.every((r) => r.error === undefined)).toBe(true);
    expect(durationS).toBeGreaterThanOrEqual(last);
    w.requests.forEach((r, i) => {
      const offsetMs = seenFor(r).at - start;
      // Never early; late only by connection setup and timer slack.
      expect(offsetMs).toBeGreaterThanOrEqual(w.arrivals[i] * 1000 - 1);
      expect(offsetMs).toBeLessThan(w.arrivals[i] * 1000 + 80);
    });
  });

  it('counts error data lines, HTTP errors and cut-off streams as failed requests', async () => {
    const req = (first: number, maxTokens: number): GenerateRequest => ({
      promptIds: [first, 500, 501, 502, 503, 504, 505, 506],
      sampling: { maxTokens, ignoreEos: true },
    });
    const w: Workload = {
      requests: [req(500, 5), req(STREAM_ERROR, 5), req(HTTP_ERROR, 5), req(NO_DONE, 3), req(NO_USAGE, 4)],
      arrivals: [0, 0, 0, 0, 0],
    };
    const { results, durationS } = await runHttpBench(url, w, { model: 'given', apiKey: 'sk-test' });
    expect(modelListings).toBe(0);
    expect(seen.map((s) => s.body.model)).toEqual(Array(5).fill('given'));
    expect(seen.map((s) => s.auth)).toEqual(Array(5).fill('Bearer sk-test'));
    const [ok, streamErr, httpErr, noDone, noUsage] = results;
    expect(ok.error).toBeUndefined();
    expect(ok.completionTokens).toBe(5);
    expect(streamErr.error).toBe('boom');
    expect(httpErr.error).toMatch(/^HTTP 400: bad prompt$/);
    expect(noDone.error).toMatch(/\[DONE\]/);
    // Without a usage chunk the counts are the client's own.
    expect(noUsage.error).toBeUndefined();
    expect(noUsage.completionTokens).toBe(4);
    expect(noUsage.promptTokens).toBe(8);
    expect(noUsage.cachedTokens).toBe(0);

    const report = httpBenchReport(results, durationS);
    expect(report.failed).toBe(3);
    expect(report.requests).toBe(2);
    expect(report.output_tok_s * durationS).toBeCloseTo(5 + 4, 6);
    expect(report.total_tok_s * durationS).toBeCloseTo(5 + 4 + 8 + 8, 6);
    expect(report.prefix_hit_rate).toBeCloseTo(cachedFor(8) / 16, 12);
    expect(report.itl_ms).toEqual(summarize([...ok.itlMs, ...noUsage.itlMs]));
  });

  it('keeps at most maxConcurrency requests in flight', async () => {
    const w = workloadOf({ numRequests: 6, outputLen: 3, rangeRatio: 0 });
    const { results } = await runHttpBench(url, w, { maxConcurrency: 2 });
    expect(results.every((r) => r.error === undefined)).toBe(true);
    expect(seen).toHaveLength(6);
    expect(maxInFlight).toBe(2);
  });

  it('reports an unreachable server per request rather than throwing, once a model is named', async () => {
    const dead = createServer();
    await new Promise<void>((res) => dead.listen(0, '127.0.0.1', res));
    const deadUrl = `http://127.0.0.1:${(dead.address() as AddressInfo).port}`;
    await new Promise((res) => dead.close(res));
    const w = workloadOf({ numRequests: 3 });
    await expect(runHttpBench(deadUrl, w, {})).rejects.toThrow(/cannot reach/);
    const { results } = await runHttpBench(deadUrl, w, { model: 'm' });
    expect(results).toHaveLength(3);
    for (const r of results) expect(r.error).toBeTruthy();
    expect(httpBenchReport(results, 0.01)).toMatchObject({ requests: 0, failed: 3, prefix_hit_rate: 0 });
  });
});

describe('httpBenchReport', { timeout: 3000 }, () => {
  const r = (o: Partial<HttpResult>): HttpResult => ({
    ttftMs: 10,
    itlMs: [],
    e2eMs: 10,
    promptTokens: 0,
    completionTokens: 1,
    cachedTokens: 0,
    ...o,
  });

  it('computes the figures from successful requests only', () => {
    const results = [
      r({ ttftMs: 10, itlMs: [2, 4], e2eMs: 16, promptTokens: 100, completionTokens: 3, cachedTokens: 50 }),
      r({ ttftMs: 20, itlMs: [], e2eMs: 20, promptTokens: 60, completionTokens: 1, cachedTokens: 0 }),
      r({ ttftMs: 99, e2eMs: 99, promptTokens: 900, completionTokens: 900, cachedTokens: 900, error: 'x' }),
    ];
    expect(httpBenchReport(results, 2)).toEqual({
      requests: 2,
      duration_s: 2,
      output_tok_s: 2,
      total_tok_s: 82,
      ttft_ms: summarize([10, 20]),
      tpot_ms: summarize([3]),
      itl_ms: summarize([2, 4]),
      failed: 1,
      prefix_hit_rate: 50 / 160,
    });
  });

  it('has no NaN for an empty run', () => {
    const report = httpBenchReport([], 0);
    expect(JSON.stringify(report)).not.toMatch(/null|NaN/);
    expect(report).toMatchObject({ requests: 0, failed: 0, prefix_hit_rate: 0, output_tok_s: 0 });
  });
});
