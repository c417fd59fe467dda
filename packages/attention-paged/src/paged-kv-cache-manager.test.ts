import {
  createContainer,
  DEFAULT_SAMPLING,
  type KvCacheConfig,
  kvCacheRegistry,
  Sequence,
} from '@switchyard/core';
import { kvCacheConformance } from '@switchyard/core/testing';
import { describe, expect, it } from 'vitest';
import { hashBlock, PagedKvCacheManager, register } from './index.js';

const CONFIG: KvCacheConfig = { blockSize: 4, numBlocks: 16, enablePrefixCaching: true };

kvCacheConformance('paged', (cfg) => {
  const container = createContainer();
  register(container);
  return kvCacheRegistry(container).get('paged')(cfg);
});

let numSeqs = 0;
const seqOf = (tokens: number[]) => new Sequence(`p${numSeqs++}`, tokens, DEFAULT_SAMPLING);
const range = (start: number, end: number) => Array.from({ length: end - start }, (_, i) => start + i);

/** Allocates the rest of the sequence after its prefix hit, computes and commits it. */
function prefill(kv: PagedKvCacheManager, seq: Sequence): number {
  const hit = kv.matchPrefix(seq);
  expect(kv.allocate(seq, seq.length - hit, hit)).toBe(true);
  seq.numComputedTokens = seq.length;
  kv.commit(seq);
  kv.checkIntegrity();
  return hit;
}

describe('PagedKvCacheManager', () => {
  it("is registered as 'paged'", () => {
    const container = createContainer();
    register(container);
    expect(kvCacheRegistry(container).get('paged')(CONFIG)).toBeInstanceOf(PagedKvCacheManager);
  });

  it('confirms keys on a hit, so colliding hashes never share KV', () => {
    const kv = new PagedKvCacheManager(CONFIG, () => 42);
    const a = seqOf(range(0, 9));
    prefill(kv, a);
    kv.free(a);
    expect(kv.usage().numCachedBlocks).toBe(1);
    expect(kv.matchPrefix(seqOf(range(0, 9)))).toBe(4);
    expect(kv.matchPrefix(seqOf(range(100, 109)))).toBe(0);
    expect(kv.matchPrefix(seqOf([...range(0, 4), ...range(100, 105)]))).toBe(4);
  });

  it('confirms the parent on a hit, so equal keys at another position never share KV', () => {
    const kv = new PagedKvCacheManager(CONFIG, () => 42);
    const a = seqOf(Array(9).fill(7));
    prefill(kv, a);
    kv.free(a);
    const b = seqOf(Array(9).fill(7));
    expect(prefill(kv, b)).toBe(4);
    expect(new Set(kv.blockTable(b)).size).toBe(3);
  });

  it('keeps a block computed twice private and chains later blocks through the cached copy', () => {
    const kv = new PagedKvCacheManager(CONFIG);
    const [a, b] = [seqOf(range(0, 9)), seqOf(range(0, 9))];
    for (const s of [a, b]) expect(kv.allocate(s, 9)).toBe(true);
    for (const s of [a, b]) {
      s.numComputedTokens = 9;
      kv.commit(s);
    }
    for (const t of [50, 51, 52]) {
      b.outputIds.push(t);
      expect(kv.allocate(b, 1)).toBe(true);
      b.numComputedTokens++;
      kv.commit(b);
    }
    kv.checkIntegrity();
    const [tableA, tableB] = [[...kv.blockTable(a)], [...kv.blockTable(b)]];
    kv.free(a);
    kv.free(b);
    kv.checkIntegrity();
    expect(kv.usage()).toMatchObject({ numUsedBlocks: 0, numCachedBlocks: 3 });
    const c = seqOf([...range(0, 9), 50, 51, 52, 7]);
    expect(prefill(kv, c)).toBe(12);
    expect(kv.blockTable(c).slice(0, 3)).toEqual([tableA[0], tableA[1], tableB[2]]);
  });

  it('reuses empty blocks before evicting cached ones', () => {
    const kv = new PagedKvCacheManager(CONFIG);
    const a = seqOf(range(0, 9));
    prefill(kv, a);
    kv.free(a);
    expect(kv.allocate(seqOf(range(100, 156)), 56)).toBe(true);
    expect(kv.usage()).toMatchObject({ numUsedBlocks: 14, numCachedBlocks: 2, numFreeBlocks: 0 });
    expect(kv.matchPrefix(seqOf(range(0, 9)))).toBe(8);
  });

  it('hashBlock gives safe integers that depend on the parent, the keys and their order', () => {
    const keys = [3, 1, 4, 1, 5, 9, 2, 6, -7, 2 ** 31 - 1];
    const h = hashBlock(-1, keys, 0, 4);
    expect(Number.isSafeInteger(h) && h >= 0).toBe(true);
    expect(hashBlock(-1, [...keys], 0, 4)).toBe(h);
    expect(hashBlock(-2, keys, 0, 4)).not.toBe(h);
    expect(hashBlock(2 ** 40, keys, 0, 4)).not.toBe(hashBlock(2 ** 40 + 2 ** 32, keys, 0, 4));
    expect(hashBlock(-1, [1, 3, 4, 1], 0, 4)).not.toBe(h);
    expect(new Set(range(0, 1000).map((p) => hashBlock(p, keys, 4, 10))).size).toBe(1000);
    expect(hashBlock(0, [-(2 ** 40) - 1], 0, 1)).not.toBe(hashBlock(0, [-1], 0, 1));
  });

  type Internals = {
    blocks: { ref: number; hash: number }[];
    index: Map<number, unknown>;
    numCached: number;
  };
  it.each<[string, (kv: Internals) => void, RegExp]>([
    ['a refcount', (kv) => kv.blocks[0].ref++, /refcount/],
    ['a lost index entry', (kv) => kv.index.clear(), /missing from the index/],
    ['the cached count', (kv) => kv.numCached++, /cached/],
    ['a stray hash on a free block', (kv) => (kv.blocks[15].hash = 7), /missing from the index/],
  ])('checkIntegrity reports a corrupted %s', (_, corrupt, message) => {
    const kv = new PagedKvCacheManager(CONFIG);
    const a = seqOf(range(0, 9));
    prefill(kv, a);
    kv.free(a);
    prefill(kv, seqOf(range(20, 25)));
    corrupt(kv as unknown as Internals);
    expect(() => kv.checkIntegrity()).toThrow(message);
  });
});
