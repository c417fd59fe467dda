import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from '@switchyard/core';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL, DEMO_VISION_MODEL } from '../cli.js';
import { createEngine } from '../create-engine.js';
import { buildServer, type Server, type ServerOptions } from './app.js';

async function start(
  options: Partial<ServerOptions> = {},
  engine?: Engine,
): Promise<{ server: Server; url: string }> {
  const server = buildServer({ engine: engine ?? (await createEngine({ model: DEMO_MODEL })), ...options });
  const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
  return { server, url };
}

const QUESTION = [{ role: 'user' as const, content: 'What does json.dumps do?' }];
const ANSWER = 'Serialize ``obj`` to a JSON formatted ``str``.';

describe('the OpenAI-compatible API, through the official client', () => {
  let server: Server;
  let client: OpenAI;
  beforeAll(async () => {
    const s = await start();
    server = s.server;
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(() => server.drain(1000));

  it('lists the served model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['switchyard-demo-text']);
  });

  it('answers a chat like transformers, with usage', async () => {
    const r = await client.chat.completions.create({
      model: 'switchyard-demo-text',
      messages: QUESTION,
      max_tokens: 40,
    });
    expect(r.choices[0].message.content).toBe(ANSWER);
    expect(r.choices[0].finish_reason).toBe('stop');
    expect(r.usage).toMatchObject({ prompt_tokens: 26, completion_tokens: 17, total_tokens: 43 });
    expect(r.usage?.prompt_tokens_details?.cached_tokens).toBeGreaterThanOrEqual(0);
  });

  it('streams a chat that adds up to the same answer, with usage last', async () => {
    const stream = await client.chat.completions.create({
      model: 'switchyard-demo-text',
      messages: QUESTION,
      max_completion_tokens: 40,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(ANSWER);
    expect(finish).toBe('stop');
    expect(usage?.completion_tokens).toBe(17);
    // The second time the prompt's full blocks come from the prefix cache.
    expect(usage?.prompt_tokens_details?.cached_tokens).toBe(16);
  });

  it('completes a raw prompt, honouring max_tokens and reporting length', async () => {
    const r = await client.completions.create({
      model: 'switchyard-demo-text',
      prompt: 'Which module defines',
      max_tokens: 3,
    });
    expect(r.choices[0].finish_reason).toBe('length');
    expect(r.usage?.completion_tokens).toBe(3);
  });

  it('gives n = 2 choices', async () => {
    const r = await client.chat.completions.create({
      model: 'switchyard-demo-text',
      messages: QUESTION,
      n: 2,
      temperature: 0.8,
      seed: 3,
      max_tokens: 8,
    });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1]);
  });

  it('reports logprobs and top logprobs', async () => {
    const r = await client.chat.completions.create({
      model: 'switchyard-demo-text',
      messages: QUESTION,
      max_tokens: 5,
      logprobs: true,
      top_logprobs: 3,
    });
    const content = r.choices[0].logprobs!.content!;
    expect(content).toHaveLength(5);
    for (const t of content) {
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.logprob).toBeLessThanOrEqual(0);
    }
    expect(content.map((t) => t.token).join('')).toBe(r.choices[0].message.content);
    const c = await client.completions.create({
      model: 'switchyard-demo-text',
      prompt: 'Which module',
      max_tokens: 2,
      logprobs: 2,
    });
    expect(c.choices[0].logprobs?.token_logprobs).toHaveLength(2);
  });

  it('stops at a stop string', async () => {
    const r = await client.chat.completions.create({
      model: 'switchyard-demo-text',
      messages: QUESTION,
      max_tokens: 40,
      stop: ['JSON'],
    });
    expect(r.choices[0].message.content).toBe('Serialize ``obj`` to a ');
    expect(r.choices[0].finish_reason).toBe('stop');
  });

  it('accepts vLLM extras: top_k, min_p, repetition_penalty, ignore_eos', async () => {
    const r = await client.chat.completions.create({
      model: 'switchyard-demo-text',
      messages: QUESTION,
      max_tokens: 30,
      // @ts-expect-error vLLM's extra sampling parameters
      top_k: 5,
      min_p: 0.05,
      repetition_penalty: 1.1,
      ignore_eos: true,
    });
    expect(r.usage?.completion_tokens).toBe(30);
  });

  it('refuses an image for a text-only model with a 400', async () => {
    const png =
      'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
    await expect(
      client.chat.completions.create({
        model: 'switchyard-demo-text',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'image_url', image_url: { url: png } },
              { type: 'text', text: 'What is this?' },
            ],
          },
        ],
      }),
    ).rejects.toMatchObject({ status: 400 });
  });
});

describe('errors, over raw HTTP', () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    // One sequence runs at a time, so a burst fills the waiting queue.
    const engine = await createEngine({ model: DEMO_MODEL, maxNumSeqs: 1 });
    ({ server, url } = await start({ apiKey: 'sekret', bodyLimit: 64 * 1024, maxWaiting: 2 }, engine));
  });
  afterAll(() => server.drain(1000));

  const post = (
    path: string,
    body: unknown,
    headers: Record<string, string> = { authorization: 'Bearer sekret' },
  ) =>
    fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  async function expectError(res: Response, status: number, param?: string) {
    expect(res.status).toBe(status);
    const body = (await res.json()) as { error: Record<string, string | null> };
    expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(body.error.message?.length).toBeGreaterThan(0);
    if (param !== undefined) expect(body.error.param).toBe(param);
    return body.error;
  }

  it('401 without the API key, and with a wrong one', async () => {
    await expectError(await post('/v1/completions', { prompt: 'hi' }, {}), 401);
    await expectError(
      await post('/v1/completions', { prompt: 'hi' }, { authorization: 'Bearer wrong' }),
      401,
    );
  });

  it('400 naming the parameter', async () => {
    await expectError(await post('/v1/completions', { prompt: 'hi', top_p: 2 }), 400, 'top_p');
    await expectError(await post('/v1/completions', { prompt: 'hi', n: 0 }), 400, 'n');
    await expectError(await post('/v1/chat/completions', { messages: 'hello' }), 400, 'messages');
    await expectError(await post('/v1/completions', '{"prompt": '), 400);
  });

  it('400 for a prompt past the context', async () => {
    const long = Array.from({ length: 1100 }, () => 60);
    const e = await expectError(await post('/v1/completions', { prompt: long }), 400, 'prompt');
    expect(e.message).toMatch(/1100 tokens but the context holds 1024/);
  });

  it('404 for an unknown model', async () => {
    await expectError(await post('/v1/completions', { model: 'gpt-4', prompt: 'hi' }), 404, 'model');
  });

  it('413 for a body over the limit', async () => {
    await expectError(await post('/v1/completions', { prompt: 'x'.repeat(100 * 1024) }), 413);
  });

  it('429 when the waiting queue is full', async () => {
    const flood = Array.from({ length: 12 }, () =>
      post('/v1/completions', { prompt: 'Which module defines deque?', max_tokens: 30, ignore_eos: true }),
    );
    const statuses = (await Promise.all(flood)).map((r) => r.status);
    expect(statuses).toContain(429);
    expect(statuses).toContain(200);
  });

  it('503 while draining', async () => {
    const { server: s2, url: u2 } = await start();
    const running = fetch(`${u2}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Which module defines deque?', max_tokens: 600, ignore_eos: true }),
    });
    // Drain once the request is running (admitted before the drain, so it must finish).
    const isRunning = async () =>
      /switchyard:num_requests_running\{[^}]*\} [1-9]/.test(await (await fetch(`${u2}/metrics`)).text());
    for (let i = 0; i < 2000 && !(await isRunning()); i++) await new Promise((r) => setTimeout(r, 5));
    const drained = s2.drain(10_000);
    // Both asked at once, while the running request still runs (a drain ends once it is done).
    const [late, health] = await Promise.all([
      fetch(`${u2}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'hi' }),
      }),
      fetch(`${u2}/health`),
    ]);
    await expectError(late, 503);
    expect(health.status).toBe(503);
    const first = await running;
    expect(first.status).toBe(200);
    expect(((await first.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(
      600,
    );
    await drained;
  }, 20_000);
});

describe('a failure in the middle of a stream', () => {
  it('arrives as a data: error object, then [DONE]', async () => {
    const engine = await createEngine({ model: DEMO_MODEL });
    const { server, url } = await start({}, engine);
    const executor = (engine as unknown as { executor: { run: (b: unknown) => Promise<Float32Array> } })
      .executor;
    const run = executor.run.bind(executor);
    let steps = 0;
    executor.run = async (batch) => {
      if (++steps === 4) throw new Error('simulated device failure');
      return run(batch);
    };
    try {
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          prompt: 'Which module defines deque?',
          max_tokens: 20,
          ignore_eos: true,
          stream: true,
        }),
      });
      const lines = (await res.text()).split('\n\n').filter(Boolean);
      expect(lines.at(-1)).toBe('data: [DONE]');
      const error = JSON.parse(lines.at(-2)!.slice(6)).error;
      expect(error.message).toMatch(/simulated device failure/);
      expect(lines.length).toBeGreaterThan(3);
      // The engine goes on serving.
      executor.run = run;
      const ok = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'hi', max_tokens: 2 }),
      });
      expect(ok.status).toBe(200);
    } finally {
      await server.drain(1000);
    }
  });
});

describe('images through the official client (vision demo model)', () => {
  it('answers about a picture sent as a data URL, and refuses file and loopback URLs', async () => {
    const engine = await createEngine({ model: DEMO_VISION_MODEL });
    const { server, url } = await start({}, engine);
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    try {
      const ref = JSON.parse(readFileSync(join(DEMO_VISION_MODEL, 'demo_reference.json'), 'utf8'));
      const asked = ref.chat.find((c: { image: string }) => c.image === 'examples/scene6.png');
      const png = readFileSync(join(DEMO_VISION_MODEL, asked.image)).toString('base64');
      const r = await client.chat.completions.create({
        model: 'switchyard-demo-vision',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
              { type: 'text', text: asked.messages[0].content[1].text },
            ],
          },
        ],
        max_tokens: 24,
      });
      expect(asked.generated_text).toBe('The black shape is a circle.');
      expect(r.choices[0].message.content?.trim()).toBe(asked.generated_text);
      for (const bad of ['file:///etc/passwd', 'http://127.0.0.1:1/x.png', 'data:image/png;base64,###']) {
        await expect(
          client.chat.completions.create({
            model: 'switchyard-demo-vision',
            messages: [
              {
                role: 'user',
                content: [
                  { type: 'image_url', image_url: { url: bad } },
                  { type: 'text', text: 'x' },
                ],
              },
            ],
          }),
        ).rejects.toMatchObject({ status: 400 });
      }
    } finally {
      await server.drain(1000);
    }
  });
});
