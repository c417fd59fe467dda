import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from '@switchyard/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_VISION_MODEL } from '../../cli.js';
import { createEngine } from '../../create-engine.js';
import { buildServer, type Server } from '../app.js';

/** SGLang's /generate on the vision demo: batches, raw base64 images, return_logprob. */
describe("SGLang's /generate", () => {
  let server: Server;
  let engine: Engine;
  let url: string;
  const ref = JSON.parse(readFileSync(join(DEMO_VISION_MODEL, 'demo_reference.json'), 'utf8')).chat;
  beforeAll(async () => {
    engine = await createEngine({ model: DEMO_VISION_MODEL });
    server = buildServer({ engine });
    url = await server.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(() => server.drain(1000));
  const post = async (body: unknown) => {
    const r = await fetch(`${url}/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    // biome-ignore lint/suspicious/noExplicitAny: response bodies of every shape, read field by field
    return { status: r.status, body: (await r.json()) as any };
  };
  /** The chat prompt of a reference case, as SGLang clients send it: rendered text. */
  const promptOf = (c: { messages: unknown }) => engine.checkpoint.chatTemplate!.render(c.messages as never);

  it('answers about a raw-base64 image like transformers', async () => {
    const c = ref[0];
    const image = readFileSync(join(DEMO_VISION_MODEL, c.image)).toString('base64');
    const r = await post({ text: promptOf(c), image_data: image, sampling_params: { max_new_tokens: 16 } });
    expect(r.status).toBe(200);
    expect(r.body.output_ids).toEqual(c.generated_ids);
    expect(r.body.text.trim()).toBe(c.generated_text);
    expect(r.body.meta_info.finish_reason).toEqual({ type: 'stop' });
  });

  it('answers a batch of text prompts (one image each) as a list, in order', async () => {
    const cases = ref.slice(0, 3);
    const r = await post({
      text: cases.map(promptOf),
      image_data: cases.map((c: { image: string }) =>
        readFileSync(join(DEMO_VISION_MODEL, c.image)).toString('base64'),
      ),
      sampling_params: { max_new_tokens: 16, temperature: 0 },
    });
    expect(r.status).toBe(200);
    expect(r.body.map((x: { text: string }) => x.text.trim())).toEqual(
      cases.map((c: { generated_text: string }) => c.generated_text),
    );
    const ids = await post({
      input_ids: [
        [1, 2, 3],
        [4, 5],
      ],
      sampling_params: { max_new_tokens: 2 },
    });
    expect(ids.body).toHaveLength(2);
  });

  it('returns output and input logprobs with return_logprob', async () => {
    const r = await post({
      text: 'USER: hello ASSISTANT:',
      sampling_params: { max_new_tokens: 3 },
      return_logprob: true,
      top_logprobs_num: 2,
      logprob_start_len: 0,
    });
    const m = r.body.meta_info;
    expect(m.output_token_logprobs).toHaveLength(r.body.output_ids.length);
    m.output_token_logprobs.forEach(([lp, id]: [number, number], i: number) => {
      expect(id).toBe(r.body.output_ids[i]);
      expect(lp).toBeLessThanOrEqual(0);
    });
    expect(m.output_top_logprobs[0]).toHaveLength(2);
    expect(m.input_token_logprobs).toHaveLength(m.prompt_tokens);
    expect(m.input_token_logprobs[0][0]).toBeNull();
    const bad = await post({ text: 'x', sampling_params: { max_tokens: 3 } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/sampling_params has an unknown key 'max_tokens'/);
  });
});
