import type { Engine, GenerateResult } from '@switchyard/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL } from './cli.js';
import { createEngine } from './create-engine.js';

/** Engine behaviour beyond greedy parity, on the embedded demo model (always present). */
describe('engine', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine({ model: DEMO_MODEL, checkIntegrity: true });
  });
  afterAll(() => engine.close());

  const ask = (content: string) => [{ role: 'user', content }];

  it('reports KV bytes per cached token as 2 × layers × kv heads × head dim × 4', () => {
    const d = engine.spec.decoder;
    expect(engine.info.kvBytesPerToken).toBe(2 * d.numLayers * d.numKvHeads * d.headDim * 4);
    expect(engine.info.kvBytesPerToken).toBe(2 * 5 * 2 * 32 * 4);
  });

  it('names what is available for an unknown device, dtype or quantization', async () => {
    await expect(createEngine({ model: DEMO_MODEL, device: 'tpu' as 'cpu' })).rejects.toThrow(
      /device 'tpu' is not available; available: cpu, cuda, webgpu/,
    );
    await expect(createEngine({ model: DEMO_MODEL, dtype: 'float16' })).rejects.toThrow(
      /not supported on the cpu device; use float32/,
    );
    await expect(createEngine({ model: DEMO_MODEL, quantization: 'int4' })).rejects.toThrow(
      /quantization 'int4' is not available on the cpu device; use int4 with --device cuda or webgpu/,
    );
  });

  it.each([
    [{ temperature: -1 }, 'temperature'],
    [{ topP: 0 }, 'top_p'],
    [{ topP: 1.5 }, 'top_p'],
    [{ n: 0 }, 'n'],
    [{ maxTokens: 0 }, 'max_tokens'],
    [{ maxTokens: 1_000_000 }, 'max_tokens'],
  ])('rejects %o naming %s and enqueues nothing', async (sampling, param) => {
    await expect(engine.generate([{ prompt: 'hi', sampling }])).rejects.toMatchObject({
      param,
      message: expect.stringContaining(param),
    });
    expect(engine.numUnfinished()).toBe(0);
    expect(engine.scheduler.hasUnfinished()).toBe(false);
  });

  it('rejects a whole batch with one bad request before running any of it', async () => {
    const steps = engine.metrics.numSteps;
    await expect(
      engine.generate([{ prompt: 'fine' }, { prompt: 'bad', sampling: { temperature: -2 } }]),
    ).rejects.toThrow(/temperature/);
    expect(engine.metrics.numSteps).toBe(steps);
    expect(engine.numUnfinished()).toBe(0);
  });

  it('gives n completions sharing the prompt KV through the prefix cache', async () => {
    const before = engine.kv.prefixStats().hits;
    const [r] = await engine.generate([
      {
        messages: ask('Which module defines quote?'),
        sampling: { n: 3, temperature: 1, seed: 5, maxTokens: 12 },
      },
    ]);
    expect(r.outputs).toHaveLength(3);
    expect(r.outputs.map((o) => o.index)).toEqual([0, 1, 2]);
    expect(engine.kv.prefixStats().hits - before).toBeGreaterThanOrEqual(2 * 16);
    expect(r.usage.completionTokens).toBe(r.outputs.reduce((a, o) => a + o.tokenIds.length, 0));
  });

  it('repeats a seeded sample exactly, alone or in a batch', async () => {
    const req = {
      messages: ask('What does json.dumps do?'),
      sampling: { temperature: 1.2, topK: 20, seed: 42, maxTokens: 16 },
    };
    const [alone] = await engine.generate([req]);
    const [, batched] = await engine.generate([{ prompt: 'x y z', sampling: { maxTokens: 8 } }, req]);
    expect(batched.outputs[0].tokenIds).toEqual(alone.outputs[0].tokenIds);
  });

  it('stops at a stop string that spans tokens, cutting the text before it', async () => {
    const [full] = await engine.generate([
      { messages: ask('Which module defines quote?'), sampling: { maxTokens: 20 } },
    ]);
    expect(full.outputs[0].text).toBe('quote is defined in the shlex module.');
    const [cut] = await engine.generate([
      { messages: ask('Which module defines quote?'), sampling: { maxTokens: 20, stop: ['fined in'] } },
    ]);
    expect(cut.outputs[0].text).toBe('quote is de');
    expect(cut.outputs[0].finishReason).toBe('stop');
    expect(cut.outputs[0].tokenIds.length).toBeLessThan(full.outputs[0].tokenIds.length);
  });

  it('streams the same text it returns, and reports logprobs of the chosen tokens', async () => {
    let streamed = '';
    let result: GenerateResult | undefined;
    for await (const e of engine.stream({
      messages: ask('Which module defines deque?'),
      sampling: { maxTokens: 20, logprobs: 2 },
    })) {
      if (e.type === 'delta') streamed += e.text;
      else result = e.result;
    }
    expect(result!.outputs[0].text).toBe(streamed);
    const lp = result!.outputs[0].logprobs!;
    expect(lp).toHaveLength(result!.outputs[0].tokenIds.length);
    lp.forEach((l, i) => {
      expect(l.token).toBe(result!.outputs[0].tokenIds[i]);
      expect(l.top).toHaveLength(2);
      expect(l.logprob).toBeLessThanOrEqual(0);
      expect(l.top[0].logprob).toBeGreaterThanOrEqual(l.top[1].logprob);
    });
  });

  it('records TTFT, inter-token latency, queue time and end-to-end latency', async () => {
    const before = engine.metrics.ttft.count;
    const [r] = await engine.generate([{ prompt: 'hello', sampling: { maxTokens: 5, ignoreEos: true } }]);
    expect(engine.metrics.ttft.count).toBe(before + 1);
    expect(r.metrics.ttftMs).toBeGreaterThan(0);
    expect(r.metrics.e2eMs).toBeGreaterThanOrEqual(r.metrics.ttftMs);
    expect(r.metrics.itlMs).toHaveLength(4);
    expect(engine.metrics.interTokenLatency.count).toBeGreaterThanOrEqual(4);
    const stats = engine.stats();
    expect(stats).toMatchObject({ numRunning: 0, numWaiting: 0, kvUsage: 0 });
    expect(stats.prefixHitRate).toBeGreaterThan(0);
    expect(stats.numGenerationTokens).toBeGreaterThanOrEqual(5);
  });
});
