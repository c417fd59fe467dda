import { mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Engine } from '@switchyard/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL } from './cli.js';
import { createEngine } from './create-engine.js';

/** logit_bias, min_tokens and prompt logprobs through the real engine, on the embedded text demo. */
describe('engine: logit_bias, min_tokens, prompt logprobs', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine({ model: DEMO_MODEL, checkIntegrity: true });
  });
  afterAll(() => engine.close());
  const prompt = 'def load(path):\n    """';

  it('prompt logprobs equal the decode-time logprobs of the same tokens', async () => {
    const [gen] = await engine.generate([
      { prompt, sampling: { maxTokens: 6, logprobs: 2, ignoreEos: true } },
    ]);
    const out = gen.outputs[0];
    const [scored] = await engine.generate([
      { promptIds: [...gen.promptTokenIds, ...out.tokenIds], sampling: { maxTokens: 1, promptLogprobs: 3 } },
    ]);
    const lps = scored.promptLogprobs!;
    expect(lps).toHaveLength(gen.promptTokenIds.length + out.tokenIds.length);
    expect(lps[0]).toBeNull();
    for (let i = 1; i < lps.length; i++) {
      expect(lps[i]!.token).toBe(scored.promptTokenIds[i]);
      expect(lps[i]!.top).toHaveLength(3);
      expect(lps[i]!.logprob).toBeLessThanOrEqual(lps[i]!.top[0].logprob + 1e-6);
    }
    out.logprobs!.forEach((l, k) => {
      const p = lps[gen.promptTokenIds.length + k]!;
      expect(p.token).toBe(l.token);
      expect(Math.abs(p.logprob - l.logprob)).toBeLessThan(1e-3);
      // Greedy picked the argmax, which prefill scores first too.
      expect(p.top[0].token).toBe(l.token);
    });
    // A second identical request (prefix-cache hit for plain requests) still gets every position.
    const [again] = await engine.generate([
      { promptIds: scored.promptTokenIds, sampling: { maxTokens: 1, promptLogprobs: 0 } },
    ]);
    expect(again.promptLogprobs!.slice(1).every((l) => l !== null)).toBe(true);
    expect(again.promptLogprobs![5]!.logprob).toBeCloseTo(lps[5]!.logprob, 4);
  });

  it('logit_bias steers greedy decoding to the biased token', async () => {
    const [plain] = await engine.generate([{ prompt, sampling: { maxTokens: 3 } }]);
    const target = (plain.outputs[0].tokenIds[0] + 7) % engine.info.vocabSize;
    const [biased] = await engine.generate([
      { prompt, sampling: { maxTokens: 3, logitBias: { [target]: 100 } } },
    ]);
    expect(biased.outputs[0].tokenIds).toEqual([target, target, target]);
    const [banned] = await engine.generate([
      { prompt, sampling: { maxTokens: 1, logitBias: { [plain.outputs[0].tokenIds[0]]: -100 } } },
    ]);
    expect(banned.outputs[0].tokenIds[0]).not.toBe(plain.outputs[0].tokenIds[0]);
  });

  it('min_tokens keeps EOS away until that many tokens are out', async () => {
    const eos = engine.checkpoint.eosTokenIds[0];
    // A strong bias toward EOS ends a request at once, unless min_tokens holds it off.
    const [quick] = await engine.generate([
      { prompt, sampling: { maxTokens: 20, logitBias: { [eos]: 100 } } },
    ]);
    expect(quick.outputs[0].tokenIds).toEqual([eos]);
    const [held] = await engine.generate([
      { prompt, sampling: { maxTokens: 20, minTokens: 5, logitBias: { [eos]: 100 } } },
    ]);
    expect(held.outputs[0].tokenIds).toHaveLength(6);
    expect(held.outputs[0].tokenIds.slice(0, 5)).not.toContain(eos);
    expect(held.outputs[0].tokenIds[5]).toBe(eos);
    expect(held.outputs[0].finishReason).toBe('stop');
  });
});

describe('engine: the code API refuses keys it does not know', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine({ model: DEMO_MODEL });
  });
  afterAll(() => engine.close());

  it('says to use maxTokens for max_tokens, in sampling or at the top level', async () => {
    await expect(
      engine.generate([{ prompt: 'x', sampling: { max_tokens: 64 } as Record<string, unknown> }]),
    ).rejects.toThrow(/max_tokens: is not a sampling key of the code API; use maxTokens/);
    await expect(engine.generate([{ prompt: 'x', max_tokens: 64 } as never])).rejects.toThrow(
      /max_tokens is not a GenerateRequest key; sampling settings go in sampling: \{ maxTokens: … \}/,
    );
    await expect(engine.generate([{ prompt: 'x', prompt_ids: [1] } as never])).rejects.toThrow(
      /prompt_ids is not a GenerateRequest key; use promptIds/,
    );
  });

  it('reports the stop string or stop token id that ended a completion', async () => {
    const [plain] = await engine.generate([
      { prompt: 'def f(x):', sampling: { maxTokens: 8, ignoreEos: true } },
    ]);
    const t = plain.outputs[0].tokenIds[2];
    const [byId] = await engine.generate([
      { prompt: 'def f(x):', sampling: { maxTokens: 8, stopTokenIds: [t] } },
    ]);
    expect(byId.outputs[0].stopReason).toBe(t);
    const word = plain.outputs[0].text.trim().slice(0, 2);
    const [byStr] = await engine.generate([
      { prompt: 'def f(x):', sampling: { maxTokens: 8, stop: [word] } },
    ]);
    expect(byStr.outputs[0].stopReason).toBe(word);
  });
});

describe('engine: sampling defaults from generation_config.json (--generation-config)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-genconfig-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of readdirSync(DEMO_MODEL))
    if (f !== 'generation_config.json') symlinkSync(join(DEMO_MODEL, f), join(dir, f));
  writeFileSync(
    join(dir, 'generation_config.json'),
    JSON.stringify({
      eos_token_id: 4,
      temperature: 0.5,
      top_k: 7,
      repetition_penalty: 1.3,
      max_new_tokens: 3,
      do_sample: true,
    }),
  );

  it("auto takes the model's defaults for omitted settings; the request's own win", async () => {
    const engine = await createEngine({ model: dir });
    try {
      expect(engine.samplingDefaults).toEqual({
        temperature: 0.5,
        topK: 7,
        repetitionPenalty: 1.3,
        maxTokens: 3,
      });
      const [a] = await engine.generate([{ prompt: 'def f(x):', sampling: { ignoreEos: true } }]);
      expect(a.outputs[0].tokenIds).toHaveLength(3);
      const [b] = await engine.generate([
        { prompt: 'def f(x):', sampling: { maxTokens: 5, ignoreEos: true } },
      ]);
      expect(b.outputs[0].tokenIds).toHaveLength(5);
    } finally {
      await engine.close();
    }
  });

  it('vllm uses vLLM defaults (temperature 1) and none ours (greedy, the context left), ignoring the file', async () => {
    const v = await createEngine({ model: dir, generationConfig: 'vllm' });
    expect(v.samplingDefaults).toMatchObject({ temperature: 1, topK: 0 });
    await v.close();
    const n = await createEngine({ model: dir, generationConfig: 'none', maxModelLen: 40 });
    try {
      expect(n.samplingDefaults).toEqual({});
      const [r] = await n.generate([{ prompt: 'def f(x):', sampling: { ignoreEos: true } }]);
      expect(r.outputs[0].tokenIds).toHaveLength(n.info.maxModelLen - r.promptTokenIds.length);
      expect(r.outputs[0].finishReason).toBe('length');
    } finally {
      await n.close();
    }
    await expect(createEngine({ model: dir, generationConfig: '/nonexistent' })).rejects.toThrow(
      /no generation_config.json there; give auto, vllm, none or a folder/,
    );
  });
});
