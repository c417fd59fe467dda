import { gzipSync } from 'node:zlib';
import type { Engine } from '@switchyard/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL, DEMO_VISION_MODEL } from '../cli.js';
import { createEngine } from '../create-engine.js';
import { buildServer, type Server } from './app.js';
import { dataUrl, oneBitPng } from './hostile-helpers.js';

/** The smaller items of issue 14, each against a real server on 127.0.0.1. */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function counter(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`switchyard:${name}{`))!;
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('text server', () => {
  let server: Server;
  let url: string;
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine({ model: DEMO_MODEL, maxNumSeqs: 1 });
    server = buildServer({ engine, apiKey: 'sekret', maxWaiting: 1 });
    url = await server.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(() => server.drain(1000));

  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sekret', ...headers },
      body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
    });

  it('takes the Bearer scheme in any case (RFC 7235), and still refuses a wrong key', async () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
      const res = await post(
        '/v1/completions',
        { prompt: 'hi', max_tokens: 1 },
        { authorization: `${scheme} sekret` },
      );
      expect(res.status).toBe(200);
    }
    expect((await post('/v1/completions', { prompt: 'hi' }, { authorization: 'bearer wrong' })).status).toBe(
      401,
    );
    expect((await post('/v1/completions', { prompt: 'hi' }, { authorization: 'Basic sekret' })).status).toBe(
      401,
    );
  });

  it('refuses a compressed body with 415 instead of parsing it as plain JSON', async () => {
    const gz = gzipSync(JSON.stringify({ prompt: 'hi', max_tokens: 1 }));
    const res = await post('/v1/completions', new Uint8Array(gz), { 'content-encoding': 'gzip' });
    expect(res.status).toBe(415);
    const body = (await res.json()) as { error: { message: string; code: string } };
    expect(body.error.message).toMatch(
      /Content-Encoding "gzip" is not supported; send the request body uncompressed/,
    );
    // identity is no encoding at all.
    const plain = await post(
      '/v1/completions',
      { prompt: 'hi', max_tokens: 1 },
      { 'content-encoding': 'identity' },
    );
    expect(plain.status).toBe(200);
  });

  it('answers 429 with Retry-After when the waiting room is full', async () => {
    const long = { prompt: 'Which module defines deque?', max_tokens: 40, ignore_eos: true };
    const results = await Promise.all(Array.from({ length: 6 }, () => post('/v1/completions', long)));
    const refused = results.filter((r) => r.status === 429);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.headers.get('retry-after')).toBe('1');
  });

  it('counts a client that hangs up mid-stream as aborted, not as a success', async () => {
    const success = await counter(url, 'request_success_total');
    const aborted = await counter(url, 'request_aborted_total');
    const res = await post('/v1/completions', {
      prompt: 'Which module defines deque?',
      max_tokens: 500,
      ignore_eos: true,
      stream: true,
    });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    const until = Date.now() + 5000;
    while ((await counter(url, 'request_aborted_total')) === aborted && Date.now() < until) await sleep(20);
    expect(await counter(url, 'request_aborted_total')).toBe(aborted + 1);
    expect(await counter(url, 'request_success_total')).toBe(success);
    expect(engine.numUnfinished()).toBe(0);
  });

  it('the waiting room and client aborts hold on the SGLang and LightLLM routes too', async () => {
    const bodies = [
      { text: 'Which module defines deque?', sampling_params: { max_new_tokens: 40, ignore_eos: true } },
      { inputs: 'Which module defines deque?', parameters: { max_new_tokens: 40, ignore_eos: true } },
    ];
    for (const body of bodies) {
      const results = await Promise.all(Array.from({ length: 6 }, () => post('/generate', body)));
      const refused = results.filter((r) => r.status === 429);
      expect(refused.length, JSON.stringify(body)).toBeGreaterThan(0);
      for (const r of refused) expect(r.headers.get('retry-after')).toBe('1');
    }
    const streams = [
      [
        '/generate',
        { ...bodies[0], sampling_params: { max_new_tokens: 500, ignore_eos: true }, stream: true },
      ],
      ['/generate_stream', { ...bodies[1], parameters: { max_new_tokens: 500, ignore_eos: true } }],
    ] as const;
    for (const [path, body] of streams) {
      const aborted = await counter(url, 'request_aborted_total');
      const res = await post(path, body);
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      await reader.read();
      await reader.cancel();
      const until = Date.now() + 5000;
      while ((await counter(url, 'request_aborted_total')) === aborted && Date.now() < until) await sleep(20);
      expect(await counter(url, 'request_aborted_total'), path).toBe(aborted + 1);
    }
    expect(engine.numUnfinished()).toBe(0);
  });

  it('tokenizes a long prompt (under the bound) on its own thread: same ids, /health answers meanwhile', async () => {
    // ~37k tokens of 73k characters: about a second of tokenizing that used to stop everything.
    const prompt = 'hello world '.repeat(6000);
    const inline = engine.tokenizer.encode(prompt, true);
    let worst = 0;
    let done = false;
    const health = (async () => {
      while (!done) {
        const t = performance.now();
        await (await fetch(`${url}/health`)).text();
        worst = Math.max(worst, performance.now() - t);
        await sleep(10);
      }
    })();
    const res = await post('/tokenize', { prompt });
    done = true;
    await health;
    const body = (await res.json()) as { tokens: number[]; count: number };
    expect(body.tokens).toEqual(inline);
    expect(worst).toBeLessThan(200);
    // The same prompt as a completion is refused with the exact count once tokenized.
    const long = await post('/v1/completions', { prompt, max_tokens: 1 });
    expect(long.status).toBe(400);
    expect(((await long.json()) as { error: { message: string } }).error.message).toMatch(
      new RegExp(`${inline.length} tokens but the context holds 1024`),
    );
  });

  it('an already-aborted signal never reaches the scheduler', async () => {
    const controller = new AbortController();
    controller.abort(new Error('gone'));
    const events = engine.stream({ prompt: 'hi', sampling: { maxTokens: 5 } }, controller.signal);
    await expect(events.next()).rejects.toThrow('gone');
    expect(engine.numUnfinished()).toBe(0);
    expect(engine.stats().numPreparing).toBe(0);
  });
});

describe('vision server', () => {
  let server: Server;
  let url: string;
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine({ model: DEMO_VISION_MODEL });
    server = buildServer({ engine });
    url = await server.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(() => server.drain(1000));

  const chat = (content: unknown[]) =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content }], max_tokens: 2 }),
    });

  it('refuses image placeholder text without an image, rather than feeding the token to the model', async () => {
    for (const text of ['<image> what is this?', 'look: <image><image>']) {
      const res = await chat([{ type: 'text', text }]);
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { message: string; param: string } };
      expect(body.error.message).toMatch(/image placeholder\(s\) "<image>" but the request has no image/);
    }
    const raw = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'USER: <image>\nWhat? ASSISTANT:', max_tokens: 2 }),
    });
    expect(raw.status).toBe(400);
    // Plain text still works.
    expect((await chat([{ type: 'text', text: 'What is an image?' }])).status).toBe(200);
  });

  it('with an image, a stray placeholder in the text is refused too', async () => {
    const res = await chat([
      { type: 'image_url', image_url: { url: dataUrl(oneBitPng(64, 64, 1)) } },
      { type: 'text', text: 'and <image>?' },
    ]);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/2 image place/);
  });

  it('decodes images on worker threads sized to the cores', () => {
    expect(engine.imagePipeline?.numThreads).toBeGreaterThanOrEqual(1);
  });
});
