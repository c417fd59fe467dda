import { describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING, type SamplingParams } from '../sampling-params.js';
import { Sequence } from '../sequence.js';
import { Rng } from './rng.js';
import { Sampler } from './sampler.js';

const seq = (p: Partial<SamplingParams> = {}, prompt: number[] = [], out: number[] = []) => {
  const s = new Sequence('r', prompt, { ...DEFAULT_SAMPLING, ...p });
  s.outputIds.push(...out);
  return s;
};
const row = (xs: number[]) => Float32Array.from(xs);
const softmax = (xs: number[]) => {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
};
const randomLogits = (n: number, seed: number, scale = 3) => {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => (r.next() + r.next() + r.next() - 1.5) * scale);
};
const ids = (c: { token: number }[]) => c.map((x) => x.token).sort((a, b) => a - b);

describe('Rng', () => {
  it('is deterministic per seed and uniform-ish in [0, 1)', () => {
    const a = new Rng(7);
    const b = new Rng(7);
    const xs = Array.from({ length: 10000 }, () => a.next());
    expect(xs.slice(0, 5)).toEqual(Array.from({ length: 5 }, () => b.next()));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(Math.abs(xs.reduce((s, x) => s + x, 0) / xs.length - 0.5)).toBeLessThan(0.02);
    expect(new Rng(8).next()).not.toBe(new Rng(7).next());
    expect(new Rng(2 ** 40 + 7).next()).not.toBe(new Rng(7).next());
  });
});

describe('Sampler', () => {
  it('greedy picks the argmax, ties to the lowest id', () => {
    const s = new Sampler();
    expect(s.sample(row([0.1, 3, -2, 3, 1]), seq()).token).toBe(1);
    expect(s.sample(row([-5, -5, -9]), seq()).token).toBe(0);
    expect(s.sample(row([-1, 2, 7]), seq({ logprobs: 2 })).token).toBe(2);
  });

  it('samples with temperature in the right proportions', () => {
    const logits = [0.5, 0.3, 0.15, 0.05].map(Math.log);
    for (const temperature of [1, 2]) {
      const s = new Sampler();
      const q = seq({ temperature, seed: 123 });
      const counts = [0, 0, 0, 0];
      const draws = 20000;
      for (let i = 0; i < draws; i++) counts[s.sample(row(logits), q).token]++;
      const want = softmax(logits.map((x) => x / temperature));
      counts.forEach((c, i) => {
        expect(Math.abs(c / draws - want[i])).toBeLessThan(0.015);
      });
    }
  });

  it('top-k keeps exactly the k best (and ties at the boundary)', () => {
    const s = new Sampler();
    const logits = row([1, 5, 3, 4, 2, 0]);
    const c = s.candidates(logits, seq({ temperature: 1, topK: 3 }));
    expect(ids(c)).toEqual([1, 2, 3]);
    const want = softmax([5, 4, 3]);
    c.forEach((x, i) => {
      expect(x.prob).toBeCloseTo(want[i], 6);
    });
    expect(ids(s.candidates(row([1, 5, 3, 3, 2]), seq({ temperature: 1, topK: 2 })))).toEqual([1, 2, 3]);
    const q = seq({ temperature: 1, topK: 3, seed: 1 });
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) seen.add(s.sample(logits, q).token);
    expect([...seen].sort()).toEqual([1, 2, 3]);
  });

  it('top-p keeps the smallest prefix reaching p', () => {
    const s = new Sampler();
    const logits = row([0.1, 0.4, 0.2, 0.3].map(Math.log));
    expect(ids(s.candidates(logits, seq({ temperature: 1, topP: 0.65 })))).toEqual([1, 3]);
    expect(ids(s.candidates(logits, seq({ temperature: 1, topP: 0.75 })))).toEqual([1, 2, 3]);
    expect(ids(s.candidates(logits, seq({ temperature: 1, topP: 0.3 })))).toEqual([1]);
    // top-p applies to the top-k survivors: {1: 0.4, 3: 0.3} renormalized -> 0.571, 0.429.
    expect(ids(s.candidates(logits, seq({ temperature: 1, topK: 2, topP: 0.55 })))).toEqual([1]);
    expect(ids(s.candidates(logits, seq({ temperature: 1, topK: 2, topP: 0.6 })))).toEqual([1, 3]);
  });

  it('min-p keeps tokens with prob >= min_p * max prob, after temperature', () => {
    const s = new Sampler();
    const logits = row([0.4, 0.05, 0.3, 0.15, 0.1].map(Math.log));
    expect(ids(s.candidates(logits, seq({ temperature: 1, minP: 0.3 })))).toEqual([0, 2, 3]);
    // T=0.5 squares the ratios: 0.15/0.4 -> 0.14 < 0.3.
    expect(ids(s.candidates(logits, seq({ temperature: 0.5, minP: 0.3 })))).toEqual([0, 2]);
  });

  it('matches a full-sort reference on a 150k vocab', () => {
    const s = new Sampler();
    const logits = randomLogits(150_000, 5);
    logits[17] = Number.NEGATIVE_INFINITY;
    const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
    const reference = (p: Partial<SamplingParams>) => {
      const T = p.temperature ?? 1;
      const v = order
        .map((i) => (logits[i] - logits[order[0]]) / T)
        .filter((x) => x > Number.NEGATIVE_INFINITY);
      let n = p.minP ? v.filter((x) => x >= Math.log(p.minP!)).length : v.length;
      if (p.topK && p.topK < n) n = v.filter((x) => x >= v[p.topK! - 1]).length;
      if (p.topP !== undefined) {
        const e = v.slice(0, n).map(Math.exp);
        const z = e.reduce((a, b) => a + b, 0);
        let acc = 0;
        let j = 0;
        while (acc < p.topP * z) acc += e[j++];
        n = j;
      }
      return order.slice(0, n).sort((a, b) => a - b);
    };
    for (const p of [
      { temperature: 0.7, topK: 50 },
      { temperature: 0.8, topP: 0.1 },
      { temperature: 0.8, topP: 0.9 },
      { temperature: 1.3, topP: 0.99 },
      { temperature: 0.7, topK: 20, topP: 0.8 },
      { temperature: 1, minP: 0.2 },
      { temperature: 1, minP: 0.1, topK: 1000, topP: 0.95 },
      { temperature: 1, minP: 0.5, topK: 100_000, topP: 0.9 },
      { temperature: 50, topK: 3000 },
    ]) {
      const got = s.candidates(logits, seq(p));
      expect(ids(got), JSON.stringify(p)).toEqual(reference(p));
      expect(got.reduce((a, c) => a + c.prob, 0)).toBeCloseTo(1, 9);
    }
  });

  it('keeps top-k ties at the boundary on a large vocab', () => {
    const logits = randomLogits(10_000, 6);
    const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
    for (const i of [order[8], order[9], order[10]]) logits[i] = logits[order[9]];
    expect(new Sampler().candidates(logits, seq({ temperature: 1, topK: 10 }))).toHaveLength(11);
  });

  it('applies repetition, frequency and presence penalties numerically', () => {
    const s = new Sampler();
    const q = seq(
      { temperature: 1, repetitionPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 0.25 },
      [0],
      [1, 1, 3],
    );
    const c = s.candidates(row([2, -1, 1, 0.5]), q);
    const want = softmax([1, -3.25, 1, -0.5]);
    for (const x of c) expect(x.prob).toBeCloseTo(want[x.token], 6);
    // Counts follow outputIds as it grows.
    q.outputIds.push(3);
    const want2 = softmax([1, -3.25, 1, -1]);
    for (const x of s.candidates(row([2, -1, 1, 0.5]), q)) expect(x.prob).toBeCloseTo(want2[x.token], 6);
  });

  it('applies penalties in greedy mode too', () => {
    const s = new Sampler();
    expect(s.sample(row([3, 2.9]), seq({ presencePenalty: 0.5 }, [], [0])).token).toBe(1);
    expect(s.sample(row([3, 2]), seq({ repetitionPenalty: 2 }, [0])).token).toBe(1);
    expect(s.sample(row([-1, -1.5]), seq({ repetitionPenalty: 2 }, [0])).token).toBe(1);
  });

  it('gives the same tokens for the same seed, whatever else is in the batch', () => {
    const s = new Sampler();
    const a = seq({ temperature: 1, topP: 0.9, seed: 42 });
    const b = seq({ temperature: 1, topP: 0.9, seed: 42 });
    const other = seq({ temperature: 1 });
    const logits = randomLogits(1000, 3);
    const ta: number[] = [];
    const tb: number[] = [];
    for (let i = 0; i < 50; i++) {
      ta.push(s.sample(logits, a).token);
      s.sample(logits, other);
      s.sample(logits, other);
    }
    const s2 = new Sampler();
    for (let i = 0; i < 50; i++) tb.push(s2.sample(logits, b).token);
    expect(tb).toEqual(ta);
    const c = seq({ temperature: 1, topP: 0.9, seed: 43 });
    expect(Array.from({ length: 50 }, () => s.sample(logits, c).token)).not.toEqual(ta);
  });

  it('reports raw logprobs that normalize', () => {
    const s = new Sampler();
    const logits = randomLogits(20, 9);
    const q = seq({ temperature: 1.5, repetitionPenalty: 1.3, logprobs: 20, seed: 1 }, [2, 3]);
    const { token, logprob } = s.sample(logits, q);
    expect(logprob).toBeDefined();
    const lp = logprob!;
    expect(lp.token).toBe(token);
    expect(lp.top).toHaveLength(20);
    const lse = Math.log(lp.top.reduce((a, t) => a + Math.exp(t.logprob), 0));
    expect(lse).toBeCloseTo(0, 6);
    expect(lp.top.find((t) => t.token === token)!.logprob).toBeCloseTo(lp.logprob, 9);
    const m = Math.max(...logits);
    const z = Array.from(logits).reduce((a, x) => a + Math.exp(x - m), 0);
    expect(lp.logprob).toBeCloseTo(logits[token] - m - Math.log(z), 5);
    for (let i = 1; i < lp.top.length; i++)
      expect(lp.top[i].logprob).toBeLessThanOrEqual(lp.top[i - 1].logprob);
    const zero = s.sample(logits, seq({ logprobs: 0 })).logprob!;
    expect(zero.top).toEqual([]);
    expect(zero.logprob).toBeLessThanOrEqual(0);
    expect(s.sample(logits, seq()).logprob).toBeUndefined();
  });

  it('does not modify the caller logits', () => {
    const s = new Sampler();
    const logits = row([1, 2, 3, 4]);
    s.sample(logits, seq({ temperature: 0.5, topK: 2, repetitionPenalty: 1.5 }, [3]));
    expect(Array.from(logits)).toEqual([1, 2, 3, 4]);
  });
});

describe('Sampler: logit_bias and min_tokens', () => {
  it('adds the bias before greedy and temperature sampling; logprobs stay raw', () => {
    const s = new Sampler();
    const logits = [2, 1, 0.5, -1];
    expect(s.sample(row(logits), seq()).token).toBe(0);
    expect(s.sample(row(logits), seq({ logitBias: { 3: 5 } })).token).toBe(3);
    expect(s.sample(row(logits), seq({ logitBias: { 0: -100 } })).token).toBe(1);
    const lp = s.sample(row(logits), seq({ logitBias: { 2: 10 }, logprobs: 1 }));
    expect(lp.token).toBe(2);
    expect(lp.logprob!.logprob).toBeCloseTo(Math.log(softmax(logits)[2]), 5);
    expect(lp.logprob!.top[0].token).toBe(0);
    // With temperature the draw follows softmax(logits + bias).
    const biased = [2, 1, 0.5 + 1.5, -1];
    const q = seq({ temperature: 1, seed: 5, logitBias: { 2: 1.5 } });
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 20000; i++) counts[s.sample(row(logits), q).token]++;
    softmax(biased).forEach((p, i) => {
      expect(Math.abs(counts[i] / 20000 - p)).toBeLessThan(0.015);
    });
    expect(Sampler.isPlainGreedy({ ...DEFAULT_SAMPLING, logitBias: { 1: 1 } })).toBe(false);
  });

  it('masks EOS and stop token ids until min_tokens outputs, then lets them through', () => {
    const s = new Sampler({ eosTokenIds: [0] });
    const logits = [5, 4, 3, 1];
    const sp = { minTokens: 2, stopTokenIds: [1] };
    expect(s.sample(row(logits), seq(sp, [], [])).token).toBe(2);
    expect(s.sample(row(logits), seq(sp, [], [3])).token).toBe(2);
    expect(s.sample(row(logits), seq(sp, [], [3, 3])).token).toBe(0);
    const t = seq({ ...sp, temperature: 1, seed: 1 }, [], [3]);
    for (let i = 0; i < 200; i++) expect([2, 3]).toContain(s.sample(row(logits), t).token);
    expect(Sampler.isPlainGreedy({ ...DEFAULT_SAMPLING, minTokens: 1 })).toBe(false);
  });
});

describe('Sampler constraints', () => {
  it('logit_bias shifts the logits before picking; logprobs stay those of the raw logits', () => {
    const s = new Sampler();
    const sp = { logitBias: { 0: 5, 2: -100 }, logprobs: 1 };
    const r = s.sample(row([0, 3, 4]), seq(sp));
    expect(r.token).toBe(0);
    expect(r.logprob!.logprob).toBeCloseTo(0 - Math.log(1 + Math.exp(3) + Math.exp(4)), 5);
    expect(Sampler.isPlainGreedy(seq(sp).sampling)).toBe(false);
  });

  it('min_tokens forbids EOS and stop ids until enough tokens were generated', () => {
    const s = new Sampler();
    const logits = row([9, 8, 1, 0]);
    const c = { eosIds: [0] };
    expect(s.sample(logits, seq({ minTokens: 2, stopTokenIds: [1] }, [5], [3]), c).token).toBe(2);
    expect(s.sample(logits, seq({ minTokens: 1 }, [5], [3]), c).token).toBe(0);
    // Sampling never picks them either.
    const sampled = seq({ minTokens: 5, temperature: 1, seed: 1 }, [5]);
    for (let i = 0; i < 50; i++) expect(s.sample(logits, sampled, c).token).not.toBe(0);
  });

  it('the grammar mask leaves only allowed tokens, greedy and sampled', () => {
    const s = new Sampler();
    const allowed = new Int32Array([0b1010]);
    expect(s.sample(row([9, 1, 8, 2]), seq(), { allowed }).token).toBe(3);
    const sampled = seq({ temperature: 2, seed: 3, topK: 3 });
    for (let i = 0; i < 50; i++)
      expect([1, 3]).toContain(s.sample(row([9, 1, 8, 2]), sampled, { allowed }).token);
  });
});
