import { describe, expect, it } from 'vitest';
import type { KvCacheManager } from '../kv-cache.js';
import { DEFAULT_SAMPLING } from '../sampling-params.js';
import { Sequence } from '../sequence.js';
import { fitsInPool, RequestQueues, SequenceQueue } from './queue.js';

const seq = (id: string) => new Sequence(id, [1, 2, 3], DEFAULT_SAMPLING);

/** Records the calls the queues make. */
function fakeKv() {
  const calls: string[] = [];
  const kv = {
    config: { blockSize: 4, numBlocks: 2, enablePrefixCaching: false },
    commit: (s: Sequence, n?: number) =>
      calls.push(`commit ${s.id} ${s.numComputedTokens}${n === undefined ? '' : ` ahead ${n}`}`),
    free: (s: Sequence) => calls.push(`free ${s.id}`),
  } as unknown as KvCacheManager;
  return { kv, calls };
}

describe('SequenceQueue', () => {
  it('keeps order through push, pushFront and remove, with lookup by id', () => {
    const q = new SequenceQueue();
    const [a, b, c] = [seq('a'), seq('b'), seq('c')];
    q.push(a);
    q.push(b);
    q.pushFront(c);
    expect([...q].map((s) => s.id)).toEqual(['c', 'a', 'b']);
    expect(q.remove(a)).toBe(true);
    expect(q.remove(a)).toBe(false);
    expect([q.length, q.get('b'), q.get('a'), q.has(c)]).toEqual([2, b, undefined, true]);
  });

  it('has() is by identity, not by id', () => {
    const q = new SequenceQueue();
    q.push(seq('a'));
    expect(q.has(seq('a'))).toBe(false);
  });
});

describe('RequestQueues', () => {
  it('add rejects a duplicate id', () => {
    const rq = new RequestQueues(fakeKv().kv);
    rq.add(seq('a'));
    expect(() => rq.add(seq('a'))).toThrow("sequence 'a' is already scheduled");
  });

  it('admit moves a sequence from waiting to running', () => {
    const rq = new RequestQueues(fakeKv().kv);
    const a = seq('a');
    rq.add(a);
    rq.admit(a, 0);
    expect([rq.waiting.length, rq.running.has(a), a.status]).toEqual([0, true, 'running']);
  });

  it('admit sets the computed tokens to the hit, and the cached tokens at the first admission', () => {
    const rq = new RequestQueues(fakeKv().kv);
    const a = seq('a');
    rq.add(a);
    rq.admit(a, 4);
    expect([a.numComputedTokens, a.numCachedTokens, a.status]).toEqual([4, 4, 'running']);
    rq.abort('a');
    a.numPreemptions = 1;
    a.numComputedTokens = 0;
    rq.add(a);
    rq.admit(a, 8);
    expect([a.numComputedTokens, a.numCachedTokens]).toEqual([8, 4]);
  });

  it('commitAhead commits what the step will have computed', () => {
    const { kv, calls } = fakeKv();
    const rq = new RequestQueues(kv);
    const a = seq('a');
    rq.add(a);
    rq.admit(a, 0);
    rq.commitAhead([{ seq: a, numNewTokens: 3 }]);
    expect(calls).toEqual(['commit a 0 ahead 3']);
  });

  it('update advances, commits, and frees and drops finished sequences', () => {
    const { kv, calls } = fakeKv();
    const rq = new RequestQueues(kv);
    const [a, b] = [seq('a'), seq('b')];
    for (const s of [a, b]) {
      rq.add(s);
      rq.admit(s, 0);
    }
    b.status = 'finished';
    rq.update({
      scheduled: [
        { seq: a, numNewTokens: 3 },
        { seq: b, numNewTokens: 2 },
      ],
      preempted: [],
      numBatchedTokens: 5,
    });
    expect(calls).toEqual(['commit a 3', 'commit b 2', 'free b']);
    expect([rq.running.has(a), rq.running.has(b)]).toEqual([true, false]);
  });

  it('update skips a sequence aborted after schedule()', () => {
    const { kv, calls } = fakeKv();
    const rq = new RequestQueues(kv);
    const a = seq('a');
    rq.add(a);
    rq.admit(a, 0);
    rq.abort('a');
    rq.update({ scheduled: [{ seq: a, numNewTokens: 3 }], preempted: [], numBatchedTokens: 3 });
    expect([calls, a.numComputedTokens]).toEqual([['free a'], 0]);
  });

  it('abort frees only a running sequence and marks either finished', () => {
    const { kv, calls } = fakeKv();
    const rq = new RequestQueues(kv);
    const [a, b] = [seq('a'), seq('b')];
    rq.add(a);
    rq.add(b);
    rq.admit(a, 0);
    expect([rq.abort('a'), rq.abort('b'), rq.abort('a')]).toEqual([a, b, undefined]);
    expect(calls).toEqual(['free a']);
    expect([a.finishReason, b.finishReason, b.status, rq.hasUnfinished()]).toEqual([
      'abort',
      'abort',
      'finished',
      false,
    ]);
  });

  it('reject finishes a waiting sequence with reason error', () => {
    const rq = new RequestQueues(fakeKv().kv);
    const a = seq('a');
    rq.add(a);
    rq.reject(a);
    expect([a.status, a.finishReason, rq.hasUnfinished()]).toEqual(['finished', 'error', false]);
  });

  it.each([
    [8, true],
    [9, false],
  ])('fitsInPool(%i tokens) in 2 blocks of 4 is %s', (n, expected) => {
    expect(fitsInPool(fakeKv().kv, n)).toBe(expected);
  });
});
