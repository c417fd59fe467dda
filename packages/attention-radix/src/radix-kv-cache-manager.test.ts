import {
  createContainer,
  DEFAULT_SAMPLING,
  type KvCacheConfig,
  kvCacheRegistry,
  Sequence,
} from '@switchyard/core';
import { kvCacheConformance } from '@switchyard/core/testing';
import { describe, expect, it } from 'vitest';
import { RadixKvCacheManager, register } from './index.js';
import { MinHeap } from './min-heap.js';

const CONFIG: KvCacheConfig = { blockSize: 4, numBlocks: 16, enablePrefixCaching: true };

kvCacheConformance('radix', (cfg) => {
  const container = createContainer();
  register(container);
  return kvCacheRegistry(container).get('radix')(cfg);
});

let numSeqs = 0;
const seqOf = (tokens: number[], cacheSalt?: string) =>
  new Sequence(`r${numSeqs++}`, tokens, DEFAULT_SAMPLING, { cacheSalt });
const range = (start: number, end: number) => Array.from({ length: end - start }, (_, i) => start + i);

/** Admits the sequence after its prefix hit and computes `n` tokens (default: all), committing them. */
function run(kv: RadixKvCacheManager, seq: Sequence, n = seq.length): number {
  const hit = kv.matchPrefix(seq);
  expect(kv.allocate(seq, seq.length - hit, hit)).toBe(true);
  seq.numComputedTokens = Math.max(hit, n);
  kv.commit(seq);
  kv.checkIntegrity();
  return hit;
}

function cache(kv: RadixKvCacheManager, seq: Sequence): void {
  run(kv, seq);
  kv.free(seq);
  kv.checkIntegrity();
}

describe('RadixKvCacheManager', () => {
  it("is registered as 'radix'", () => {
    const container = createContainer();
    register(container);
    expect(kvCacheRegistry(container).get('radix')(CONFIG)).toBeInstanceOf(RadixKvCacheManager);
  });

  it('deduplicates pages computed twice: the later sequence adopts the tree blocks', () => {
    const kv = new RadixKvCacheManager(CONFIG);
    const [a, b] = [seqOf(range(0, 9)), seqOf(range(0, 9))];
    for (const s of [a, b]) expect(kv.allocate(s, 9)).toBe(true);
    expect(kv.usage().numUsedBlocks).toBe(6);
    for (const s of [a, b]) {
      s.numComputedTokens = 9;
      kv.commit(s);
      kv.checkIntegrity();
    }
    expect(kv.blockTable(b).slice(0, 2)).toEqual(kv.blockTable(a).slice(0, 2));
    expect(kv.usage()).toMatchObject({ numUsedBlocks: 4, numFreeBlocks: 12 });
  });

  it('splits a node to lock only the matched pages', () => {
    const kv = new RadixKvCacheManager(CONFIG);
    cache(kv, seqOf(range(0, 13)));
    expect(run(kv, seqOf([...range(0, 4), 99, 98, 97]), 0)).toBe(4);
    expect(kv.usage()).toEqual({ numBlocks: 16, numUsedBlocks: 2, numCachedBlocks: 2, numFreeBlocks: 12 });
    expect(kv.allocate(seqOf(range(100, 156)), 56)).toBe(true);
    expect(kv.matchPrefix(seqOf(range(0, 13)))).toBe(4);
    expect(kv.canAllocate(seqOf(range(200, 204)), 4)).toBe(false);
    kv.checkIntegrity();
  });

  it('evicts a parent only after its children', () => {
    const kv = new RadixKvCacheManager(CONFIG);
    cache(kv, seqOf(range(0, 9)));
    cache(kv, seqOf([...range(0, 4), ...range(50, 54), 7]));
    expect(kv.allocate(seqOf(range(100, 156)), 56)).toBe(true);
    const hits = () => [
      kv.matchPrefix(seqOf(range(0, 9))),
      kv.matchPrefix(seqOf([...range(0, 4), ...range(50, 54), 7])),
    ];
    expect(hits()).toEqual([4, 8]);
    for (const expected of [
      [4, 4],
      [0, 0],
    ]) {
      expect(kv.allocate(seqOf(range(300, 304)), 4)).toBe(true);
      expect(hits()).toEqual(expected);
    }
    kv.checkIntegrity();
  });

  it('keeps a root per cache salt and drops it once its tree is empty', () => {
    const kv = new RadixKvCacheManager(CONFIG);
    const roots = (kv as unknown as { roots: Map<string, unknown> }).roots;
    cache(kv, seqOf(range(0, 9), 'a'));
    cache(kv, seqOf(range(0, 9), 'b'));
    expect([...roots.keys()]).toEqual(['a', 'b']);
    kv.reset();
    expect(roots.size).toBe(0);
    expect(kv.usage().numFreeBlocks).toBe(16);
  });

  type Node = { lockRef: number; children: Map<string, Node> };
  type Internals = { roots: Map<string, Node>; freeBlocks: number[]; numLockedBlocks: number };
  it.each<[string, (kv: Internals) => void, RegExp]>([
    ['lock ref', (kv) => ([...kv.roots.get('')!.children.values()][0].lockRef += 1), /lockRef/],
    ['free list', (kv) => kv.freeBlocks.push(kv.freeBlocks[0]), /held by both/],
    ['lost block', (kv) => kv.freeBlocks.pop(), /neither free, cached nor used/],
    ['locked count', (kv) => kv.numLockedBlocks++, /locked/],
  ])('checkIntegrity reports a corrupted %s', (_, corrupt, message) => {
    const kv = new RadixKvCacheManager(CONFIG);
    cache(kv, seqOf(range(0, 9)));
    run(kv, seqOf(range(0, 10)));
    corrupt(kv as unknown as Internals);
    expect(() => kv.checkIntegrity()).toThrow(message);
  });

  it('MinHeap pops in order', () => {
    const heap = new MinHeap<number>((a, b) => a < b);
    const xs = [5, 3, 9, 1, 1, 8, 2, 7];
    for (const x of xs) heap.push(x);
    expect(Array.from(xs, () => heap.pop())).toEqual([...xs].sort((a, b) => a - b));
    expect(heap.pop()).toBeUndefined();
  });
});
