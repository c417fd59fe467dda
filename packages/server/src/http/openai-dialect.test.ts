import type { Engine } from '@switchyard/core';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL } from '../cli.js';
import { createEngine } from '../create-engine.js';
import { buildServer, type Server } from './app.js';

/** The OpenAI request fields beyond the basics, through the official client and raw HTTP. */
describe('OpenAI dialect: fields, echo, batches, logit_bias, min_tokens', () => {
  let server: Server;
  let engine: Engine;
  let url: string;
  let client: OpenAI;
  const model = 'switchyard-demo-text';
  const prompt = 'def load(path):\n    """';
  beforeAll(async () => {
    engine = await createEngine({ model: DEMO_MODEL });
    server = buildServer({ engine });
    url = await server.app.listen({ host: '127.0.0.1', port: 0 });
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(() => server.drain(1000));

  const post = async (path: string, body: unknown) => {
    const r = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    // biome-ignore lint/suspicious/noExplicitAny: response bodies of every shape, read field by field
    return { status: r.status, body: (await r.json()) as Record<string, any> };
  };

  it('answers 400 naming an unknown field, as OpenAI does', async () => {
    for (const path of ['/v1/completions', '/v1/chat/completions']) {
      const base = path.includes('chat') ? { messages: [{ role: 'user', content: 'hi' }] } : { prompt: 'hi' };
      const r = await post(path, { ...base, max_tokens: 2, temprature: 0.5 });
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({
        message: 'Unrecognized request argument supplied: temprature',
        param: 'temprature',
      });
    }
  });

  it('refuses suffix and best_of with what to do instead', async () => {
    const s = await post('/v1/completions', { prompt: 'x', suffix: 'y' });
    expect(s.status).toBe(400);
    expect(s.body.error.param).toBe('suffix');
    expect(s.body.error.message).toMatch(/no fill-in-the-middle mode/);
    const b = await post('/v1/completions', { prompt: 'x', best_of: 3 });
    expect(b.status).toBe(400);
    expect(b.body.error.message).toMatch(/best_of is not supported; ask for n completions/);
    expect((await post('/v1/completions', { prompt: 'x', best_of: 1, max_tokens: 1 })).status).toBe(200);
  });

  it('accepts vLLM-ignored fields with a warning in the body', async () => {
    const r = await post('/v1/completions', { prompt: 'x', max_tokens: 1, user: 'u1', store: false });
    expect(r.status).toBe(200);
    expect(r.body.warnings).toEqual([
      expect.stringMatching(/^user is accepted and ignored/),
      expect.stringMatching(/^store is accepted and ignored/),
    ]);
    // Fields the structured-output code owns are not refused here.
    expect(
      (await post('/v1/completions', { prompt: 'x', max_tokens: 1, response_format: null })).status,
    ).toBe(200);
  });

  it('takes every structured-output field, each parsed (a bad value is a 400 naming it)', async () => {
    const chat = { messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 };
    const good: Record<string, unknown>[] = [
      { response_format: { type: 'json_object' } },
      { guided_choice: ['yes', 'no'] },
      { guided_regex: '[a-z]+' },
      { guided_json: { type: 'object' } },
      { guided_grammar: 'root ::= "a" | "b"' },
      {
        tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
        tool_choice: 'none',
      },
      { parallel_tool_calls: true, tools: [{ type: 'function', function: { name: 'f' } }] },
      { logit_bias: { '5': 1 }, min_tokens: 1, jump_forward: false },
      { chat_template_kwargs: { enable_thinking: false } },
      { add_generation_prompt: true },
    ];
    for (const extra of good) {
      const r = await post('/v1/chat/completions', { ...chat, ...extra });
      expect(r.status, `${JSON.stringify(extra)}: ${JSON.stringify(r.body)}`).toBe(200);
    }
    const bad: [Record<string, unknown>, string][] = [
      [{ chat_template_kwargs: 5 }, 'chat_template_kwargs'],
      [{ guided_regex: 5 }, 'guided_regex'],
      [{ jump_forward: 'yes' }, 'jump_forward'],
      [{ logit_bias: { '5': 101 } }, 'logit_bias'],
    ];
    for (const [extra, param] of bad) {
      const r = await post('/v1/chat/completions', { ...chat, ...extra });
      expect(r.status, JSON.stringify(extra)).toBe(400);
      expect(r.body.error.param).toBe(param);
    }
    const w = await post('/v1/chat/completions', { ...chat, guided_decoding_backend: 'xgrammar' });
    expect(w.status).toBe(200);
    expect(w.body.warnings).toEqual([
      expect.stringMatching(/^guided_decoding_backend is accepted and ignored/),
    ]);
  });

  it('GET /v1/models/{id} and system_fingerprint', async () => {
    const m = await client.models.retrieve(model);
    expect(m).toMatchObject({ id: model, object: 'model', owned_by: 'switchyard' });
    await expect(client.models.retrieve('gpt-4')).rejects.toMatchObject({ status: 404 });
    const a = await client.completions.create({ model, prompt, max_tokens: 2 });
    const b = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 2,
    });
    expect(a.system_fingerprint).toMatch(/^fp_[0-9a-f]{10}$/);
    expect(b.system_fingerprint).toBe(a.system_fingerprint);
  });

  it('stop_reason names the stop string or token that matched (null for EOS and length)', async () => {
    const plain = await client.completions.create({
      model,
      prompt,
      max_tokens: 8,
      ignore_eos: true,
    } as never);
    const word = plain.choices[0].text.slice(2, 4);
    const r = await post('/v1/completions', { prompt, max_tokens: 8, stop: [word] });
    expect(r.body.choices[0]).toMatchObject({ finish_reason: 'stop', stop_reason: word });
    const len = await post('/v1/completions', { prompt, max_tokens: 1 });
    expect(len.body.choices[0].stop_reason).toBeNull();
  });

  it('logit_bias and min_tokens change the output as asked', async () => {
    const plain = await client.completions.create({ model, prompt, max_tokens: 2 });
    const ids = (await post('/tokenize', { prompt: ' the', add_special_tokens: false })).body.tokens;
    const biased = await client.completions.create({
      model,
      prompt,
      max_tokens: 2,
      logit_bias: { [ids[0]]: 100 },
    });
    expect(biased.choices[0].text).toBe(' the the');
    expect(biased.choices[0].text).not.toBe(plain.choices[0].text);
    const bias = { [engine.checkpoint.eosTokenIds[0]]: 100 };
    const eos = await post('/v1/completions', { prompt, max_tokens: 9, logit_bias: bias });
    const held = await post('/v1/completions', { prompt, max_tokens: 9, logit_bias: bias, min_tokens: 4 });
    expect(eos.body.usage.completion_tokens).toBe(1);
    expect(held.body.usage.completion_tokens).toBe(5);
    const bad = await post('/v1/completions', { prompt, logit_bias: { 99999999: 1 } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe('logit_bias');
  });

  it('echo puts the prompt first, with its logprobs (the first token has none)', async () => {
    const r = await client.completions.create({ model, prompt, max_tokens: 3, echo: true, logprobs: 2 });
    const plain = await client.completions.create({ model, prompt, max_tokens: 3 });
    expect(r.choices[0].text).toBe(prompt + plain.choices[0].text);
    const lp = r.choices[0].logprobs!;
    const n = r.usage!.prompt_tokens;
    expect(lp.tokens).toHaveLength(n + 3);
    expect(lp.token_logprobs![0]).toBeNull();
    expect(lp.token_logprobs!.slice(1).every((x) => typeof x === 'number' && x <= 0)).toBe(true);
    // The tokens are the ids the model saw, BOS included (as vLLM reports them).
    expect(lp.tokens!.join('').endsWith(r.choices[0].text)).toBe(true);
    const streamed = await client.completions.create({
      model,
      prompt,
      max_tokens: 3,
      echo: true,
      stream: true,
    });
    let text = '';
    for await (const c of streamed) text += c.choices[0]?.text ?? '';
    expect(text).toBe(r.choices[0].text);
  });

  it('prompt_logprobs in vLLM shape', async () => {
    const r = await post('/v1/completions', { prompt, max_tokens: 1, prompt_logprobs: 1 });
    const pl = r.body.choices[0].prompt_logprobs;
    expect(pl[0]).toBeNull();
    expect(pl).toHaveLength(r.body.usage.prompt_tokens);
    const entries = Object.entries(pl[1] as Record<string, { rank: number }>);
    const [id, entry] = entries.find(([, v]) => v.rank !== 1) ?? entries[0];
    expect(Number(id)).toBeGreaterThanOrEqual(0);
    expect(entry).toMatchObject({
      logprob: expect.any(Number),
      rank: expect.any(Number),
      decoded_token: expect.any(String),
    });
  });

  it('answers a batch of prompts as choices i × n + j, each as the prompt alone', async () => {
    const prompts = [prompt, 'import os\n', 'class Stack:'];
    const alone = await Promise.all(
      prompts.map((p) => client.completions.create({ model, prompt: p, max_tokens: 6 })),
    );
    const r = await client.completions.create({
      model,
      prompt: prompts,
      max_tokens: 6,
      n: 2,
      seed: 1,
      temperature: 0,
    });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2, 3, 4, 5]);
    r.choices.forEach((c) => {
      expect(c.text).toBe(alone[Math.floor(c.index / 2)].choices[0].text);
    });
    expect(r.usage!.prompt_tokens).toBe(2 * 0 + alone.reduce((a, x) => a + x.usage!.prompt_tokens, 0));
    const ids = await client.completions.create({
      model,
      prompt: [
        [1, 2, 3],
        [4, 5],
      ],
      max_tokens: 2,
    });
    expect(ids.choices).toHaveLength(2);
    const stream = await client.completions.create({ model, prompt: prompts, max_tokens: 6, stream: true });
    const texts = ['', '', ''];
    for await (const c of stream) for (const ch of c.choices) texts[ch.index] += ch.text;
    expect(texts).toEqual(alone.map((a) => a.choices[0].text));
  });
});

describe('priority per request (--policy priority)', () => {
  it('runs waiting requests lowest priority value first', async () => {
    const engine = await createEngine({ model: DEMO_MODEL, policy: 'priority', maxNumSeqs: 1 });
    const server = buildServer({ engine });
    const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const order: string[] = [];
      const send = (name: string, priority: number, max: number) =>
        fetch(`${url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: `def ${name}(x):`, max_tokens: max, ignore_eos: true, priority }),
        }).then(async (r) => {
          expect(r.status).toBe(200);
          await r.json();
          order.push(name);
        });
      const first = send('first', 0, 40);
      // Let the first request start before the others queue.
      while (engine.stats().numRunning === 0) await new Promise((r) => setTimeout(r, 5));
      const rest = [send('late', 9, 2), send('urgent', -5, 2), send('middle', 3, 2)];
      while (engine.stats().numWaiting < 3) await new Promise((r) => setTimeout(r, 5));
      await Promise.all([first, ...rest]);
      expect(order).toEqual(['first', 'urgent', 'middle', 'late']);
      const bad = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'x', priority: 'high' }),
      });
      expect(bad.status).toBe(400);
    } finally {
      await server.drain(1000);
    }
  });
});
