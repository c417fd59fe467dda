import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { fixture } from '@switchyard/core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { DEMO_MODEL } from './cli.js';
import { type Cli, dataUrl, oneBitPng, rssOf, startCli, watchWhile } from './http/hostile-helpers.js';

/**
 * Attacks from issue 14 against the real `switchyard serve` binary on 127.0.0.1, each bounded in
 * count and time. Every test starts its own server and kills it at the end whatever happens.
 */

const GB = 1024 ** 3;
let running: Cli[] = [];
afterEach(() => {
  for (const cli of running) cli.kill();
  running = [];
});
async function serve(args: string[]): Promise<Cli> {
  const cli = await startCli(args);
  running.push(cli);
  return cli;
}

const chatWithImages = (urls: string[], extra: object = {}) =>
  JSON.stringify({
    messages: [
      {
        role: 'user',
        content: [
          ...urls.map((url) => ({ type: 'image_url', image_url: { url } })),
          { type: 'text', text: 'What is it?' },
        ],
      },
    ],
    max_tokens: 4,
    ...extra,
  });

const post = (cli: Cli, path: string, body: string, signal?: AbortSignal) =>
  fetch(`${cli.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal,
  });

/** A POST through node:http with the body as one buffer (less client work than fetch). */
function rawPost(cli: Cli, path: string, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${cli.url}${path}`,
      { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': body.length } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** One gauge or counter from /metrics. */
async function metric(cli: Cli, name: string): Promise<number> {
  const text = await (await fetch(`${cli.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`switchyard:${name}{`));
  if (line === undefined) throw new Error(`no metric ${name}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

const qwen2 = fixture('qwen2-tiny');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('image bombs (vision demo)', () => {
  it('4 concurrent requests of 8 distinct 8000×8000 1-bit PNGs: refused from the headers with a 400 naming the limit; RSS and /health hold', async () => {
    const cli = await serve([]);
    const base = rssOf(cli.pid);
    const bodies = Array.from({ length: 4 }, (_, r) =>
      chatWithImages(Array.from({ length: 8 }, (_, i) => dataUrl(oneBitPng(8000, 8000, r * 8 + i)))),
    );
    // Each request is a few KB per image: the attack is in the pixels, not the bytes.
    expect(Math.max(...bodies.map((b) => b.length))).toBeLessThan(300_000);
    const { result, worstHealthMs, peakRss } = await watchWhile(
      cli,
      Promise.all(
        bodies.map(async (b) => {
          const res = await post(cli, '/v1/chat/completions', b);
          return {
            status: res.status,
            body: (await res.json()) as { error: { message: string; param: string } },
          };
        }),
      ),
    );
    for (const r of result) {
      expect(r.status).toBe(400);
      expect(r.body.error.message).toMatch(
        /512 MP together .* over the per-request limit of 64 MP.*--max-image-pixels/,
      );
    }
    expect(peakRss - base).toBeLessThan(GB);
    expect(worstHealthMs).toBeLessThan(500);
  }, 60_000);

  it('accepted large images are decoded off the main thread within the in-flight budget: RSS and /health hold', async () => {
    // 16 MP images, two per request, four requests: 128 MP through a 64 MP budget on worker threads.
    const cli = await serve(['--max-image-pixels', '40000000']);
    const base = rssOf(cli.pid);
    const bodies = Array.from({ length: 4 }, (_, r) =>
      chatWithImages([0, 1].map((i) => dataUrl(oneBitPng(4000, 4000, 100 + r * 2 + i)))),
    );
    const { result, worstHealthMs, peakRss, samples } = await watchWhile(
      cli,
      Promise.all(bodies.map(async (b) => (await post(cli, '/v1/chat/completions', b)).status)),
    );
    expect(result).toEqual([200, 200, 200, 200]);
    expect(samples).toBeGreaterThan(5);
    expect(peakRss - base).toBeLessThan(GB);
    expect(worstHealthMs).toBeLessThan(500);
  }, 60_000);

  it('a client that closes while its image is decoded leaves zero generated tokens', async () => {
    const cli = await serve([]);
    const controller = new AbortController();
    const pending = post(
      cli,
      '/v1/chat/completions',
      chatWithImages([dataUrl(oneBitPng(8000, 8000, 7))], { max_tokens: 900, ignore_eos: true }),
      controller.signal,
    ).catch((e: Error) => e.name);
    // Wait until the engine has the request in hand (decoding), then hang up.
    const until = Date.now() + 10_000;
    while ((await metric(cli, 'num_requests_preparing')) === 0 && Date.now() < until) await sleep(20);
    expect(await metric(cli, 'num_requests_preparing')).toBe(1);
    controller.abort();
    expect(await pending).toBe('AbortError');
    // Once the decode is over the request must be gone, not queued.
    while (Date.now() < until + 10_000) {
      const busy =
        (await metric(cli, 'num_requests_preparing')) +
        (await metric(cli, 'num_requests_running')) +
        (await metric(cli, 'num_requests_waiting'));
      if (busy === 0) break;
      await sleep(50);
    }
    expect(await metric(cli, 'num_requests_preparing')).toBe(0);
    expect(await metric(cli, 'num_requests_running')).toBe(0);
    expect(await metric(cli, 'generation_tokens_total')).toBe(0);
    expect(await metric(cli, 'request_success_total')).toBe(0);
  }, 40_000);

  it('--max-waiting holds with image requests: the ones past it get 429 with Retry-After', async () => {
    const cli = await serve(['--max-waiting', '2', '--max-num-seqs', '1']);
    const bodies = Array.from({ length: 12 }, (_, i) =>
      chatWithImages([dataUrl(oneBitPng(2000, 2000, 200 + i))], { max_tokens: 60, ignore_eos: true }),
    );
    const results = await Promise.all(
      bodies.map(async (b) => {
        const res = await post(cli, '/v1/chat/completions', b);
        return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.text() };
      }),
    );
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    // One running, two waiting or preparing: no more than three are admitted at once.
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(ok.length).toBeLessThanOrEqual(3);
    expect(refused.length).toBe(12 - ok.length);
    for (const r of refused) {
      expect(r.retryAfter).toBe('1');
      expect(r.body).toMatch(/--max-waiting/);
    }
  }, 60_000);
});

describe('slow and hostile clients (text demo)', () => {
  const TEXT = ['--model', DEMO_MODEL];

  /** Opens a raw connection, sends `head`, then trickles `trickle` a byte every `everyMs`. */
  function slowClient(cli: Cli, head: string, trickle = '', everyMs = 200) {
    const { port } = new URL(cli.url);
    const socket: Socket = connect(Number(port), '127.0.0.1');
    let received = '';
    socket.on('data', (d) => {
      received += d;
    });
    socket.on('error', () => {});
    const closed = new Promise<number>((resolve) => {
      const started = Date.now();
      socket.on('close', () => resolve(Date.now() - started));
    });
    let i = 0;
    socket.write(head);
    const timer = setInterval(() => {
      if (i < trickle.length && !socket.destroyed) socket.write(trickle[i++]);
    }, everyMs);
    void closed.then(() => clearInterval(timer));
    return { closed, received: () => received, socket, stop: () => clearInterval(timer) };
  }

  it('cuts a slow body within --request-timeout, slow headers within --headers-timeout, idle keep-alive within --keep-alive-timeout', async () => {
    const cli = await serve([
      ...TEXT,
      '--request-timeout',
      '1',
      '--headers-timeout',
      '1',
      '--keep-alive-timeout',
      '1',
    ]);
    const body = '{"prompt": "hello", "max_tokens": 2}';
    const slowBody = slowClient(
      cli,
      `POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`,
      body,
    );
    const slowHeaders = slowClient(
      cli,
      'POST /v1/completions HTTP/1.1\r\n',
      'x-slow: 1111111111111111111\r\n',
    );
    const [bodyMs, headersMs] = await Promise.all([slowBody.closed, slowHeaders.closed]);
    expect(bodyMs).toBeLessThan(2500);
    expect(headersMs).toBeLessThan(2500);
    expect(slowBody.received()).toMatch(/^HTTP\/1\.1 408/);
    // The server still answers others; an idle keep-alive connection is closed after its timeout.
    const idle = slowClient(cli, 'GET /health HTTP/1.1\r\nhost: x\r\nconnection: keep-alive\r\n\r\n');
    const idleMs = await idle.closed;
    expect(idle.received()).toMatch(/^HTTP\/1\.1 200/);
    expect(idleMs).toBeGreaterThanOrEqual(900);
    expect(idleMs).toBeLessThan(2500);
  }, 30_000);

  it('a 10 MB prompt gets its 400 within 200 ms, and /health is not held up', async () => {
    const cli = await serve(TEXT);
    const prompt = 'hello world '.repeat(Math.ceil(10_000_000 / 12));
    const bytes = Buffer.from(JSON.stringify({ prompt, max_tokens: 4 }));
    // Warm the connection pool and the route.
    await (await post(cli, '/v1/completions', '{"prompt":"hi","max_tokens":1}')).text();
    for (const path of ['/v1/completions', '/tokenize']) {
      // Best of five: on a shared 2-core machine one try can lose 100 ms to the client's own upload.
      const tries: number[] = [];
      let worst = 0;
      for (let i = 0; i < 5; i++) {
        const { result, worstHealthMs } = await watchWhile(
          cli,
          (async () => {
            const t = performance.now();
            const res = await rawPost(cli, path, bytes);
            const json = JSON.parse(res.body) as { error: { message: string; param: string } };
            return { status: res.status, ms: performance.now() - t, json };
          })(),
        );
        expect(result.status).toBe(400);
        expect(result.json.error.param).toBe('prompt');
        expect(result.json.error.message).toMatch(/10000008 characters long.*context holds 1024/);
        tries.push(result.ms);
        worst = Math.max(worst, worstHealthMs);
      }
      // Tokenizing it in full took 4.5 s on the main thread; reading and parsing the body is what is left.
      expect(Math.min(...tries)).toBeLessThan(200);
      expect(worst).toBeLessThan(500);
    }
  }, 30_000);

  it('SIGTERM with --drain-timeout 2 during a 2,000-token stream and a half-sent body: the stream ends with an error and [DONE], exit 0 within 5 s', async () => {
    // A 2,000-token stream needs a 2,048-position model: the qwen2-tiny fixture when it is there;
    // otherwise the demo (1,024 positions) runs three ~1,000-token streams one at a time. The
    // fixture writes ~1,000 tokens/s on a fast core, so its stream alone can end inside the 2 s:
    // a second one waits behind it and is always cut.
    const long = qwen2.missing === undefined;
    const cli = await serve([
      ...(long ? ['--model', qwen2.dir] : TEXT),
      '--drain-timeout',
      '2',
      '--max-num-seqs',
      '1',
    ]);
    const streams = Array.from({ length: long ? 2 : 3 }, async () => {
      const res = await post(
        cli,
        '/v1/completions',
        JSON.stringify({
          prompt: 'Which module defines deque?',
          max_tokens: long ? 2000 : 1000,
          ignore_eos: true,
          stream: true,
        }),
      );
      return (await res.text()).split('\n\n').filter(Boolean);
    });
    const half = slowClient(
      cli,
      'POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"prompt":',
    );
    const until = Date.now() + 10_000;
    while ((await metric(cli, 'num_requests_running')) === 0 && Date.now() < until) await sleep(20);
    const signalled = Date.now();
    cli.kill('SIGTERM');
    const code = await cli.exited;
    const tookMs = Date.now() - signalled;
    expect(code).toBe(0);
    expect(tookMs).toBeLessThan(5000);
    expect(tookMs).toBeGreaterThanOrEqual(1900);
    expect(await half.closed).toBeGreaterThan(0);
    const ends = await Promise.all(streams);
    for (const events of ends) expect(events.at(-1)).toBe('data: [DONE]');
    // What the deadline cut short says so before [DONE].
    const cut = ends.filter((e) => e.at(-2)?.includes('"error"'));
    expect(cut.length).toBeGreaterThanOrEqual(1);
    for (const e of cut) expect(e.at(-2)).toMatch(/shut down before the request finished.*--drain-timeout 2/);
  }, 30_000);
});
