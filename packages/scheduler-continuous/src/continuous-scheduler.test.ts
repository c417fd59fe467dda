import { PagedKvCacheManager } from '@switchyard/attention-paged';
import {
  createContainer,
  type KvCacheManager,
  type SchedulerConfig,
  schedulerRegistry,
} from '@switchyard/core';
import { schedulerConfig as config, expectAllFree, makeSeq, run, step } from '@switchyard/core/testing';
import { describe, expect, it } from 'vitest';

/** The real paged KV manager, blocks of 4 tokens. */
const makeKv = (numBlocks: number, enablePrefixCaching = false) =>
  new PagedKvCacheManager({ numBlocks, blockSize: 4, enablePrefixCaching });

import { ContinuousScheduler, register } from './index.js';

function setup(o: Partial<SchedulerConfig> = {}, numBlocks = 64, kv: KvCacheManager = makeKv(numBlocks)) {
  const cfg = config(o);
  return { cfg, kv, s: new ContinuousScheduler(cfg, kv) };
}

const tokensOf = (out: { scheduled: { seq: { id: string }; numNewTokens: number }[] }) =>
  Object.fromEntries(out.scheduled.map((x) => [x.seq.id, x.numNewTokens]));

describe('ContinuousScheduler', () => {
  it('shares a prefix within one step: a later admission hits what an earlier one computes', () => {
    const { cfg, kv, s } = setup({}, 64, makeKv(64, true));
    const a = makeSeq('a', 14, 2);
    const b = makeSeq('b', 14, 2, { prompt: [...a.promptIds.slice(0, 12), 7, 8] });
    s.add(a);
    s.add(b);
    expect(tokensOf(step(s, kv, cfg))).toEqual({ a: 14, b: 2 });
    expect(b.numCachedTokens).toBe(12);
    expect(kv.blockTable(b).slice(0, 3)).toEqual(kv.blockTable(a).slice(0, 3));
  });

  it('splits a long prompt into chunks within the budget (chunked prefill)', () => {
    const { cfg, kv, s } = setup({ maxNumBatchedTokens: 32 });
    s.add(makeSeq('a', 100, 2));
    const outs = run(s, kv, cfg);
    expect(outs.map((o) => o.numBatchedTokens)).toEqual([32, 32, 32, 4, 1]);
    expectAllFree(kv);
  });

  it('schedules running sequences first, then fills the budget with waiting ones', () => {
    const { cfg, kv, s } = setup({ maxNumBatchedTokens: 32 });
    s.add(makeSeq('a', 40, 3));
    step(s, kv, cfg);
    s.add(makeSeq('b', 20, 3));
    expect(tokensOf(step(s, kv, cfg))).toEqual({ a: 8, b: 20 });
    expect(tokensOf(step(s, kv, cfg))).toEqual({ a: 1, b: 1 });
  });

  it('without chunked prefill, a prompt that does not fit the remaining budget waits whole', () => {
    const { cfg, kv, s } = setup({ maxNumBatchedTokens: 32, enableChunkedPrefill: false });
    s.add(makeSeq('a', 10, 3));
    s.add(makeSeq('b', 32, 2));
    expect(tokensOf(step(s, kv, cfg))).toEqual({ a: 10 });
    expect(tokensOf(step(s, kv, cfg))).toEqual({ a: 1 });
    expect(tokensOf(step(s, kv, cfg))).toEqual({ a: 1 });
    expect(tokensOf(step(s, kv, cfg))).toEqual({ b: 32 });
  });

  it('caps the number of running sequences at maxNumSeqs', () => {
    const { cfg, kv, s } = setup({ maxNumSeqs: 2 });
    for (const id of ['a', 'b', 'c']) s.add(makeSeq(id, 4, 2));
    expect(Object.keys(tokensOf(step(s, kv, cfg)))).toEqual(['a', 'b']);
    expect(s.numWaiting()).toBe(1);
  });

  it('preempts the newest running sequence to the front of waiting when the pool is full', () => {
    // 4 blocks of 4 tokens: a and b take 2 blocks each, then a needs a third.
    const { cfg, kv, s } = setup({}, 4);
    const [a, b, c] = [makeSeq('a', 8, 4), makeSeq('b', 7, 4), makeSeq('c', 4, 1)];
    for (const seq of [a, b, c]) s.add(seq);
    expect(tokensOf(step(s, kv, cfg))).toEqual({ a: 8, b: 7 });
    const out = step(s, kv, cfg);
    expect(tokensOf(out)).toEqual({ a: 1 });
    expect(out.preempted).toEqual([b]);
    expect([b.numPreemptions, s.numPreemptions, s.numWaiting()]).toEqual([1, 1, 2]);
    // Nothing is admitted in a step that preempted; b, back in front, is admitted before c.
    while (a.status === 'running') step(s, kv, cfg);
    expect(tokensOf(step(s, kv, cfg))).toEqual({ b: 8, c: 4 });
  });

  it('preempts the sequence being scheduled when it is itself the victim', () => {
    const { cfg, kv, s } = setup({}, 2);
    const [a, b] = [makeSeq('a', 3, 2), makeSeq('b', 4, 2)];
    s.add(a);
    s.add(b);
    step(s, kv, cfg);
    const out = step(s, kv, cfg);
    expect(out.preempted).toEqual([b]);
    expect(tokensOf(out)).toEqual({ a: 1 });
  });

  it('under the priority policy admits lower priority values first', () => {
    const { cfg, kv, s } = setup({ policy: 'priority', maxNumSeqs: 2 });
    s.add(makeSeq('low', 4, 1, { priority: 5 }));
    s.add(makeSeq('mid', 4, 1, { priority: 1 }));
    s.add(makeSeq('high', 4, 1, { priority: 0 }));
    expect(step(s, kv, cfg).scheduled.map((x) => x.seq.id)).toEqual(['high', 'mid']);
  });

  it('under the priority policy preempts the lowest priority even if already scheduled this step', () => {
    // low and high hold 2 blocks each of 4; high, scheduled after low, needs a third.
    const { cfg, kv, s } = setup({ policy: 'priority' }, 4);
    const low = makeSeq('low', 5, 4, { priority: 9 });
    const high = makeSeq('high', 8, 4, { priority: 0 });
    s.add(low);
    step(s, kv, cfg);
    s.add(high);
    step(s, kv, cfg);
    const out = step(s, kv, cfg);
    expect(out.preempted).toEqual([low]);
    expect(tokensOf(out)).toEqual({ high: 1 });
    expect(out.numBatchedTokens).toBe(1);
  });

  it('under lpm admits the longest cached prefix first, reusing it', () => {
    const { cfg, kv, s } = setup({ policy: 'lpm', maxNumSeqs: 1 }, 64, makeKv(64, true));
    s.add(makeSeq('x', 12, 1));
    run(s, kv, cfg);
    s.add(makeSeq('a', 12, 1, { prompt: Array.from({ length: 12 }, (_, i) => 7 + i) }));
    s.add(makeSeq('b', 12, 1));
    expect(tokensOf(step(s, kv, cfg))).toEqual({ b: 4 });
  });

  it('finishes every sequence with all its tokens through preemptions in a tiny pool', () => {
    const { cfg, kv, s } = setup({ maxNumBatchedTokens: 16 }, 6);
    const seqs = Array.from({ length: 8 }, (_, i) => makeSeq(`s${i}`, 3 + i, 6));
    for (const seq of seqs) s.add(seq);
    const outs = run(s, kv, cfg);
    expect(outs.some((o) => o.preempted.length > 0)).toBe(true);
    expect(s.numPreemptions).toBe(seqs.reduce((n, x) => n + x.numPreemptions, 0));
    expect(seqs.map((x) => [x.outputIds.length, x.finishReason])).toEqual(seqs.map(() => [6, 'length']));
    expectAllFree(kv);
  });

  it('abort frees the KV of a running sequence and drops a waiting one', () => {
    const { cfg, kv, s } = setup({ maxNumSeqs: 1 });
    const [a, b] = [makeSeq('a', 10, 5), makeSeq('b', 10, 5)];
    s.add(a);
    s.add(b);
    step(s, kv, cfg);
    expect(kv.usage().numUsedBlocks).toBeGreaterThan(0);
    expect(s.abort('a')).toBe(a);
    expect(s.abort('b')).toBe(b);
    expect(s.abort('nope')).toBeUndefined();
    expect([a.finishReason, b.finishReason, a.status]).toEqual(['abort', 'abort', 'finished']);
    expect(s.hasUnfinished()).toBe(false);
    expectAllFree(kv);
  });

  it.each([
    ['exceeds the pool', { maxModelLen: 1000 }, 100, 50],
    [
      'exceeds the budget without chunked prefill',
      { maxNumBatchedTokens: 16, enableChunkedPrefill: false },
      20,
      1,
    ],
  ])('finishes a sequence whose KV %s with reason error and goes on', (_, o, promptLen, maxTokens) => {
    const { cfg, kv, s } = setup(o, 8);
    const [big, ok] = [makeSeq('big', promptLen, maxTokens), makeSeq('ok', 4, 2)];
    s.add(big);
    s.add(ok);
    run(s, kv, cfg);
    expect([big.finishReason, ok.finishReason, ok.outputIds.length]).toEqual(['error', 'length', 2]);
  });

  it('rejects an unknown policy, naming the known ones', () => {
    expect(() => setup({ policy: 'sjf' })).toThrow("unknown queue policy 'sjf'; known: fcfs, lpm, priority");
  });

  it('registers itself as "continuous"', () => {
    const c = createContainer();
    register(c);
    expect(schedulerRegistry(c).get('continuous')(config(), makeKv(4)).name).toBe('continuous');
  });

  it('finishes everything under random arrivals, aborts and pool sizes (seeded)', () => {
    const rand = mulberry32(7);
    const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
    let numSteps = 0;
    for (let trial = 0; trial < 20; trial++) {
      const chunked = rand() < 0.7;
      const kv = makeKv(int(8, 24), trial % 2 === 0);
      const cfg = config({
        policy: ['fcfs', 'priority', 'lpm'][trial % 3],
        maxNumSeqs: int(1, 8),
        maxNumBatchedTokens: chunked ? int(8, 64) : int(50, 64),
        maxModelLen: 64,
        enableChunkedPrefill: chunked,
      });
      const s = new ContinuousScheduler(cfg, kv);
      const all = [];
      for (let t = 0; t < 60 || (s.hasUnfinished() && t < 1000); t++, numSteps++) {
        if (t < 60 && rand() < 0.3) {
          const seq = makeSeq(`${trial}-${t}`, int(1, 30), int(1, 20), { priority: int(0, 3) });
          all.push(seq);
          s.add(seq);
        }
        if (rand() < 0.03 && all.length > 0) s.abort(all[int(0, all.length - 1)].id);
        step(s, kv, cfg);
      }
      expect(s.hasUnfinished()).toBe(false);
      for (const seq of all) {
        const fits = seq.maxLength <= kv.config.numBlocks * kv.config.blockSize;
        if (seq.finishReason === 'length') expect(seq.outputIds.length).toBe(seq.sampling.maxTokens);
        else expect(seq.finishReason).toEqual(fits ? 'abort' : expect.stringMatching(/^(error|abort)$/));
      }
      expectAllFree(kv);
    }
    expect(numSteps).toBeLessThan(3000);
  });
});

function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
