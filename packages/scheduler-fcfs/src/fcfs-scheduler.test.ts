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

import { FcfsScheduler, register } from './index.js';

function setup(o: Partial<SchedulerConfig> = {}, numBlocks = 64, kv: KvCacheManager = makeKv(numBlocks)) {
  const cfg = config(o);
  return { cfg, kv, s: new FcfsScheduler(cfg, kv) };
}

const tokensOf = (out: { scheduled: { seq: { id: string }; numNewTokens: number }[] }) =>
  Object.fromEntries(out.scheduled.map((x) => [x.seq.id, x.numNewTokens]));

describe('FcfsScheduler', () => {
  it('reserves prompt + max tokens at admission, capped at maxModelLen', () => {
    const { cfg, kv, s } = setup({ maxModelLen: 24 });
    const [a, b] = [makeSeq('a', 5, 10), makeSeq('b', 10, 100)];
    s.add(a);
    s.add(b);
    step(s, kv, cfg);
    expect([kv.blockTable(a).length, kv.blockTable(b).length]).toEqual([4, 6]);
  });

  it('reserves on top of a prefix hit and prefills only the rest', () => {
    const { cfg, kv, s } = setup({}, 64, makeKv(64, true));
    s.add(makeSeq('x', 12, 1));
    run(s, kv, cfg);
    const b = makeSeq('b', 12, 4);
    s.add(b);
    expect(tokensOf(step(s, kv, cfg))).toEqual({ b: 4 });
    expect(kv.blockTable(b).length).toBe(4);
  });

  it('shares a prefix within the first prefill step: later members hit what earlier ones compute', () => {
    const { cfg, kv, s } = setup({}, 64, makeKv(64, true));
    const a = makeSeq('a', 14, 2);
    const b = makeSeq('b', 14, 2, { prompt: [...a.promptIds.slice(0, 12), 7, 8] });
    s.add(a);
    s.add(b);
    expect(tokensOf(step(s, kv, cfg))).toEqual({ a: 14, b: 2 });
    expect(b.numCachedTokens).toBe(12);
    expect(kv.blockTable(b).slice(0, 3)).toEqual(kv.blockTable(a).slice(0, 3));
  });

  it('prefills the batch, then decodes one token per member until all finish', () => {
    const { cfg, kv, s } = setup();
    s.add(makeSeq('a', 5, 2));
    s.add(makeSeq('b', 7, 4));
    const outs = run(s, kv, cfg).map(tokensOf);
    expect(outs).toEqual([{ a: 5, b: 7 }, { a: 1, b: 1 }, { b: 1 }, { b: 1 }]);
    expectAllFree(kv);
  });

  it('admits nothing new until the whole batch finished', () => {
    const { cfg, kv, s } = setup({ maxNumSeqs: 2 });
    for (const seq of [makeSeq('a', 4, 1), makeSeq('b', 4, 3), makeSeq('c', 4, 1)]) s.add(seq);
    const outs = run(s, kv, cfg).map(tokensOf);
    expect(outs).toEqual([{ a: 4, b: 4 }, { b: 1 }, { b: 1 }, { c: 4 }]);
  });

  it('admits in arrival order while the reservations fit, then stops', () => {
    // 10 blocks of 4 tokens: a takes 4, b would take 8, c would take 2.
    const { cfg, kv, s } = setup({}, 10);
    for (const seq of [makeSeq('a', 15, 1), makeSeq('b', 31, 1), makeSeq('c', 7, 1)]) s.add(seq);
    expect(Object.keys(tokensOf(step(s, kv, cfg)))).toEqual(['a']);
    expect(s.numWaiting()).toBe(2);
  });

  it('prefills over several steps when the prompts exceed the budget, whole prompts where possible', () => {
    const { cfg, kv, s } = setup({ maxNumBatchedTokens: 16 });
    for (const [id, len] of Object.entries({ a: 10, b: 10, c: 40, d: 4 })) s.add(makeSeq(id, len, 2));
    const outs = run(s, kv, cfg).map(tokensOf);
    expect(outs.slice(0, 6)).toEqual([
      { a: 10, d: 4 },
      { b: 10 },
      { c: 16 },
      { c: 16 },
      { c: 8 },
      { a: 1, b: 1, c: 1, d: 1 },
    ]);
  });

  it('finishes a sequence that can never fit the pool with reason error, without blocking the queue', () => {
    const { cfg, kv, s } = setup({ maxModelLen: 1000 }, 8);
    const [big, ok] = [makeSeq('big', 20, 100), makeSeq('ok', 4, 2)];
    s.add(big);
    s.add(ok);
    run(s, kv, cfg);
    expect([big.finishReason, ok.finishReason, ok.outputIds.length]).toEqual(['error', 'length', 2]);
  });

  it('abort frees the reservation of a running sequence and drops a waiting one', () => {
    const { cfg, kv, s } = setup({ maxNumSeqs: 1 });
    const [a, b] = [makeSeq('a', 10, 5), makeSeq('b', 10, 5)];
    s.add(a);
    s.add(b);
    step(s, kv, cfg);
    expect(s.abort('a')).toBe(a);
    expect(s.abort('b')).toBe(b);
    expect([a.finishReason, b.finishReason, s.hasUnfinished()]).toEqual(['abort', 'abort', false]);
    expectAllFree(kv);
  });

  it('registers itself as "fcfs"', () => {
    const c = createContainer();
    register(c);
    expect(schedulerRegistry(c).get('fcfs')(config(), makeKv(4)).name).toBe('fcfs');
  });

  it('finishes everything, never preempting nor admitting mid-batch, under random arrivals, aborts and pool sizes (seeded)', () => {
    const rand = mulberry32(11);
    const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
    let numSteps = 0;
    for (let trial = 0; trial < 15; trial++) {
      const cfg = config({ maxNumSeqs: int(1, 8), maxNumBatchedTokens: int(8, 64), maxModelLen: 48 });
      const kv = makeKv(int(6, 24), trial % 2 === 0);
      const s = new FcfsScheduler(cfg, kv);
      const all = [];
      for (let t = 0; t < 60 || (s.hasUnfinished() && t < 1000); t++, numSteps++) {
        if (t < 60 && rand() < 0.3) {
          const seq = makeSeq(`${trial}-${t}`, int(1, 30), int(1, 30));
          all.push(seq);
          s.add(seq);
        }
        if (rand() < 0.03 && all.length > 0) s.abort(all[int(0, all.length - 1)].id);
        const waiting = all.filter((q) => q.status === 'waiting');
        const wasRunning = s.numRunning();
        expect(step(s, kv, cfg).preempted).toEqual([]);
        const admitted = waiting.filter((q) => q.status !== 'waiting' && q.finishReason !== 'error');
        if (admitted.length > 0) expect(wasRunning).toBe(0);
      }
      expect([s.hasUnfinished(), s.numPreemptions]).toEqual([false, 0]);
      for (const seq of all) {
        const fits = Math.min(seq.maxLength, 48) <= kv.config.numBlocks * kv.config.blockSize;
        const expected = Math.min(seq.sampling.maxTokens, 48 - seq.numPromptTokens);
        if (seq.finishReason === 'length') expect(seq.outputIds.length).toBe(expected);
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
