import { describe, expect, it } from 'vitest';
import type { KvCacheConfig, KvCacheManager, KvUsage } from '../kv-cache.js';
import { prefixKeys } from '../prefix-keys.js';
import { DEFAULT_SAMPLING } from '../sampling-params.js';
import { type MultimodalItem, Sequence } from '../sequence.js';

const BS = 4;
const CONFIG: KvCacheConfig = { blockSize: BS, numBlocks: 16, enablePrefixCaching: true };

let numSeqs = 0;

function seqOf(
  tokens: readonly number[],
  options: { cacheSalt?: string; mm?: MultimodalItem[] } = {},
): Sequence {
  return new Sequence(`seq-${numSeqs++}`, tokens, DEFAULT_SAMPLING, options);
}

/** Tokens `start, start + 1, …, end - 1`. */
function range(start: number, end: number): number[] {
  return Array.from({ length: end - start }, (_, i) => start + i);
}

function usage(numUsedBlocks: number, numCachedBlocks: number, numBlocks = CONFIG.numBlocks): KvUsage {
  return {
    numBlocks,
    numUsedBlocks,
    numCachedBlocks,
    numFreeBlocks: numBlocks - numUsedBlocks - numCachedBlocks,
  };
}

/** Drives a manager as the scheduler and engine would, checking integrity after every operation. */
class Driver {
  constructor(readonly kv: KvCacheManager) {}

  /** Matches, allocates `n` more tokens (default: the rest of the sequence); returns the hit. */
  admit(seq: Sequence, n?: number): number {
    const hit = this.kv.matchPrefix(seq);
    const before = seq.numComputedTokens;
    const ok = this.kv.allocate(seq, n ?? seq.length - hit, hit);
    // The manager never writes the sequence; the scheduler sets the computed tokens.
    expect(seq.numComputedTokens).toBe(before);
    if (ok) seq.numComputedTokens = hit;
    this.kv.checkIntegrity();
    if (!ok) throw new Error(`no room for ${seq.id}`);
    return hit;
  }

  /** Marks `n` more tokens computed and commits them, as after a step. */
  compute(seq: Sequence, n = seq.numUncomputedTokens): void {
    seq.numComputedTokens += n;
    this.kv.commit(seq);
    this.kv.checkIntegrity();
  }

  prefill(seq: Sequence): number {
    const hit = this.admit(seq);
    this.compute(seq);
    return hit;
  }

  decode(seq: Sequence, token: number): void {
    seq.outputIds.push(token);
    expect(this.kv.allocate(seq, 1)).toBe(true);
    this.compute(seq, 1);
  }

  free(...seqs: Sequence[]): void {
    for (const seq of seqs) this.kv.free(seq);
    this.kv.checkIntegrity();
  }

  /** Prefills then frees the sequence, leaving its full blocks cached; returns its block table. */
  cache(seq: Sequence): number[] {
    this.prefill(seq);
    const table = [...this.kv.blockTable(seq)];
    this.free(seq);
    return table;
  }
}

/**
 * The contract every KvCacheManager meets (see kv-cache.ts), as a vitest suite. Call it from an
 * implementation's test file with a factory for the implementation.
 */
export function kvCacheConformance(name: string, make: (cfg: KvCacheConfig) => KvCacheManager): void {
  const setup = (cfg: Partial<KvCacheConfig> = {}) => new Driver(make({ ...CONFIG, ...cfg }));

  describe(`KvCacheManager conformance: ${name}`, () => {
    it('starts with every block free', () => {
      const { kv } = setup();
      expect(kv.config).toEqual(CONFIG);
      expect(kv.usage()).toEqual(usage(0, 0));
      expect(kv.prefixStats()).toEqual({ queries: 0, hits: 0 });
      expect(kv.blockTable(seqOf([1, 2, 3]))).toEqual([]);
      kv.checkIntegrity();
    });

    it.each(['blockSize', 'numBlocks'] as const)('rejects a non-positive %s', (key) => {
      expect(() => make({ ...CONFIG, [key]: 0 })).toThrow(key);
    });

    it.each([1, 4, 5, 8, 13])('gives a %i-token prompt ceil(n / blockSize) distinct blocks', (n) => {
      const d = setup();
      const s = seqOf(range(0, n));
      d.prefill(s);
      const table = d.kv.blockTable(s);
      expect(table).toHaveLength(Math.ceil(n / BS));
      expect(new Set(table).size).toBe(table.length);
      for (const b of table) expect(b >= 0 && b < CONFIG.numBlocks).toBe(true);
      expect(d.kv.usage()).toEqual(usage(table.length, 0));
    });

    it('grows the block table only when decode crosses a block boundary', () => {
      const d = setup();
      const s = seqOf(range(0, 6));
      d.prefill(s);
      const first = [...d.kv.blockTable(s)];
      const lengths: number[] = [];
      for (let t = 0; t < 7; t++) {
        d.decode(s, 100 + t);
        lengths.push(d.kv.blockTable(s).length);
      }
      expect(lengths).toEqual([2, 2, 3, 3, 3, 3, 4]);
      expect(d.kv.blockTable(s).slice(0, 2)).toEqual(first);
    });

    it.each([
      [1, 1],
      [4, 1],
      [5, 2],
      [64, 16],
      [65, 17],
    ])('predicts allocate for %i tokens: %i blocks', (n, numBlocks) => {
      const { kv } = setup();
      const s = seqOf(range(0, n));
      expect(kv.numBlocksNeeded(s, n)).toBe(numBlocks);
      const can = kv.canAllocate(s, n);
      expect(can).toBe(numBlocks <= CONFIG.numBlocks);
      expect(kv.allocate(s, n)).toBe(can);
      expect(kv.usage()).toEqual(usage(can ? numBlocks : 0, 0));
      kv.checkIntegrity();
    });

    it('frees every block of a sequence and keeps its computed full blocks cached', () => {
      const d = setup();
      d.cache(seqOf(range(0, 10)));
      expect(d.kv.usage()).toEqual(usage(0, 2));
    });

    it('reuses a cached prefix and counts the hit', () => {
      const d = setup();
      const a = d.cache(seqOf(range(0, 10)));
      const b = seqOf([...range(0, 8), 100, 101, 102]);
      expect(d.kv.matchPrefix(b)).toBe(8);
      expect(d.admit(b)).toBe(8);
      expect(d.kv.blockTable(b).slice(0, 2)).toEqual(a.slice(0, 2));
      expect(d.kv.prefixStats()).toEqual({ queries: 10 + 11, hits: 8 });
      expect(d.kv.usage()).toEqual(usage(3, 0));
    });

    it('shares blocks between live sequences and counts them once', () => {
      const d = setup();
      const a = seqOf(range(0, 10));
      const b = seqOf([...range(0, 8), 100, 101, 102]);
      d.prefill(a);
      expect(d.prefill(b)).toBe(8);
      expect(d.kv.blockTable(b).slice(0, 2)).toEqual(d.kv.blockTable(a).slice(0, 2));
      expect(d.kv.usage()).toEqual(usage(4, 0));
      d.free(a);
      expect(d.kv.usage()).toEqual(usage(3, 0));
      d.free(b);
      expect(d.kv.usage()).toEqual(usage(0, 2));
    });

    it.each([
      [1, 0],
      [3, 0],
      [4, 0],
      [5, 4],
      [8, 4],
      [9, 8],
      [13, 12],
      [16, 12],
    ])('caps the hit of a %i-token prompt below its last token: %i', (n, hit) => {
      const d = setup();
      d.cache(seqOf(range(0, 16)));
      expect(d.kv.matchPrefix(seqOf(range(0, n)))).toBe(hit);
    });

    it.each([
      [undefined, 'a', 0],
      ['a', undefined, 0],
      ['a', 'b', 0],
      ['a', 'a', 8],
    ])('with cache salts %s then %s reuses %i tokens', (first, second, hit) => {
      const d = setup();
      d.cache(seqOf(range(0, 10), { cacheSalt: first }));
      expect(d.kv.matchPrefix(seqOf(range(0, 10), { cacheSalt: second }))).toBe(hit);
    });

    it.each([
      [0, 'img-b', 0],
      [4, 'img-b', 4],
      [4, 'img-a', 8],
    ])('with an image at %i, a prompt of equal text and image %s reuses %i tokens', (offset, hash, hit) => {
      const d = setup();
      const image = (h: string) => [{ hash: h, offset, length: 4 }];
      d.cache(seqOf(range(0, 12), { mm: image('img-a') }));
      expect(d.kv.matchPrefix(seqOf(range(0, 12), { mm: image(hash) }))).toBe(hit);
    });

    it('matchPrefix changes nothing, and is 0 for a sequence that holds blocks', () => {
      const d = setup();
      d.cache(seqOf(range(0, 10)));
      const b = seqOf(range(0, 10));
      const before = [d.kv.usage(), d.kv.prefixStats()];
      for (let i = 0; i < 3; i++) expect(d.kv.matchPrefix(b)).toBe(8);
      expect([d.kv.usage(), d.kv.prefixStats()]).toEqual(before);
      expect(d.kv.blockTable(b)).toEqual([]);
      expect(b.numComputedTokens).toBe(0);
      d.admit(b);
      expect(d.kv.matchPrefix(b)).toBe(0);
    });

    it('makes only computed full blocks findable', () => {
      const d = setup();
      const a = seqOf(range(0, 13));
      const probe = () => d.kv.matchPrefix(seqOf(range(0, 13)));
      d.admit(a);
      expect(probe()).toBe(0);
      d.compute(a, 6);
      expect(probe()).toBe(4);
      d.compute(a, 4);
      expect(probe()).toBe(8);
      d.compute(a, 3);
      expect(probe()).toBe(12);
    });

    it('commits ahead: a sequence admitted in the same step hits the blocks another computes in it', () => {
      const d = setup();
      const a = seqOf(range(0, 10));
      d.admit(a);
      d.kv.commit(a, a.length); // scheduled: its K/V is written in this step, before attention
      d.kv.checkIntegrity();
      const b = seqOf([...range(0, 10), 50, 51]);
      expect(d.admit(b, 4)).toBe(8);
      expect(d.kv.blockTable(b).slice(0, 2)).toEqual(d.kv.blockTable(a).slice(0, 2));
      d.compute(a);
      d.compute(b);
      expect(d.kv.prefixStats()).toEqual({ queries: 10 + 12, hits: 8 });
      d.free(a, b);
      expect(d.kv.usage().numUsedBlocks).toBe(0);
    });

    it('commits ahead no further than the sequence, and a later commit changes nothing', () => {
      const d = setup();
      const a = seqOf(range(0, 9));
      d.admit(a);
      d.kv.commit(a, 100);
      const table = [...d.kv.blockTable(a)];
      d.compute(a);
      expect(d.kv.blockTable(a)).toEqual(table);
      expect(d.kv.matchPrefix(seqOf(range(0, 12)))).toBe(8);
      d.free(a);
    });

    it('caches the KV of decoded tokens', () => {
      const d = setup();
      const a = seqOf(range(0, 6));
      d.prefill(a);
      for (const t of range(200, 206)) d.decode(a, t);
      d.free(a);
      expect(d.kv.matchPrefix(seqOf([...range(0, 6), ...range(200, 206), 9]))).toBe(12);
    });

    it('after a preemption, recomputes from its own cached blocks', () => {
      const d = setup();
      const a = seqOf(range(0, 10));
      d.prefill(a);
      d.decode(a, 100);
      d.decode(a, 101);
      d.free(a);
      a.numComputedTokens = 0;
      expect(d.admit(a)).toBe(8);
      expect(d.kv.prefixStats()).toEqual({ queries: 10 + 12, hits: 8 });
    });

    it('evicts the least recently freed prefix first, its tail block first', () => {
      const d = setup();
      d.cache(seqOf(range(0, 9)));
      d.cache(seqOf(range(100, 109)));
      expect(d.kv.usage()).toEqual(usage(0, 4));
      const hits = () => [d.kv.matchPrefix(seqOf(range(0, 9))), d.kv.matchPrefix(seqOf(range(100, 109)))];
      d.admit(seqOf(range(200, 252)));
      expect(hits()).toEqual([4, 8]);
      d.admit(seqOf(range(300, 304)));
      expect(hits()).toEqual([0, 8]);
      d.admit(seqOf(range(400, 404)));
      expect(hits()).toEqual([0, 4]);
      expect(d.kv.usage()).toEqual(usage(15, 1));
    });

    it('a prefix hit makes the reused blocks recently used again', () => {
      const d = setup();
      d.cache(seqOf(range(0, 9)));
      d.cache(seqOf(range(100, 109)));
      expect(d.cache(seqOf(range(0, 9))).length).toBe(3);
      d.admit(seqOf(range(200, 252)));
      expect(d.kv.matchPrefix(seqOf(range(0, 9)))).toBe(8);
      expect(d.kv.matchPrefix(seqOf(range(100, 109)))).toBe(4);
    });

    it('counts recency from when a sequence releases its blocks', () => {
      const d = setup();
      const [a, b] = [seqOf(range(0, 9)), seqOf(range(100, 109))];
      d.prefill(a);
      d.prefill(b);
      d.free(b);
      d.free(a);
      d.admit(seqOf(range(200, 252)));
      expect(d.kv.matchPrefix(seqOf(range(0, 9)))).toBe(8);
      expect(d.kv.matchPrefix(seqOf(range(100, 109)))).toBe(4);
    });

    it('fails cleanly when the pool is full', () => {
      const d = setup();
      const x = seqOf(range(0, 60));
      d.prefill(x);
      const y = seqOf(range(100, 108));
      y.numComputedTokens = 3;
      const snapshot = () => [d.kv.usage(), d.kv.prefixStats(), [...d.kv.blockTable(x)], y.numComputedTokens];
      const before = snapshot();
      expect(d.kv.numBlocksNeeded(y, 8)).toBe(2);
      expect(d.kv.canAllocate(y, 8)).toBe(false);
      expect(d.kv.allocate(y, 8)).toBe(false);
      expect(d.kv.numBlocksNeeded(x, 5)).toBe(2);
      expect(d.kv.canAllocate(x, 5)).toBe(false);
      expect(d.kv.allocate(x, 5)).toBe(false);
      expect(snapshot()).toEqual(before);
      expect(d.kv.blockTable(y)).toEqual([]);
      d.kv.checkIntegrity();
      d.free(x);
      expect(d.admit(y)).toBe(0);
    });

    it('counts evictable cached blocks as room, less those the hit itself revives', () => {
      const d = setup();
      const a = d.cache(seqOf(range(0, 9)));
      d.prefill(seqOf(range(500, 552)));
      expect(d.kv.usage()).toEqual(usage(13, 2));
      const b = seqOf([...range(0, 8), ...range(50, 54)]);
      const c = seqOf([...range(0, 8), ...range(50, 58)]);
      expect(d.kv.numBlocksNeeded(b, 4, 8)).toBe(3);
      expect(d.kv.canAllocate(b, 4, 8)).toBe(true);
      expect(d.kv.numBlocksNeeded(c, 8, 8)).toBe(4);
      expect(d.kv.canAllocate(c, 8, 8)).toBe(false);
      expect(d.kv.allocate(c, 8, 8)).toBe(false);
      expect(d.admit(b)).toBe(8);
      expect(d.kv.blockTable(b).slice(0, 2)).toEqual(a.slice(0, 2));
      expect(d.kv.usage()).toEqual(usage(16, 0));
    });

    it('does not count blocks a live sequence already holds', () => {
      const d = setup();
      d.prefill(seqOf(range(0, 10)));
      expect(d.kv.numBlocksNeeded(seqOf([...range(0, 8), 100, 101, 102]), 3, 8)).toBe(1);
    });

    it('rejects a hit that is not a cached prefix, changing nothing', () => {
      const d = setup();
      d.cache(seqOf(range(0, 10)));
      const s = seqOf(range(0, 10));
      expect(() => d.kv.allocate(s, 2, 12)).toThrow(/matchPrefix/);
      expect(() => d.kv.allocate(s, 4, 6)).toThrow(/matchPrefix/);
      expect(() => d.kv.numBlocksNeeded(seqOf(range(50, 60)), 2, 8)).toThrow(/matchPrefix/);
      expect(d.kv.usage()).toEqual(usage(0, 2));
      d.kv.checkIntegrity();
    });

    it('reset drops cached prefixes but keeps those of live sequences', () => {
      const d = setup();
      d.cache(seqOf(range(0, 10)));
      const b = seqOf(range(100, 110));
      d.prefill(b);
      const table = [...d.kv.blockTable(b)];
      d.kv.reset();
      d.kv.checkIntegrity();
      expect(d.kv.usage()).toEqual(usage(3, 0));
      expect(d.kv.matchPrefix(seqOf(range(0, 10)))).toBe(0);
      expect(d.kv.matchPrefix(seqOf(range(100, 110)))).toBe(8);
      expect(d.kv.blockTable(b)).toEqual(table);
    });

    it('with prefix caching off, shares and caches nothing', () => {
      const d = setup({ enablePrefixCaching: false });
      d.cache(seqOf(range(0, 10)));
      const b = seqOf(range(0, 10));
      expect(d.kv.matchPrefix(b)).toBe(0);
      expect(d.prefill(b)).toBe(0);
      d.free(b);
      expect(d.kv.usage()).toEqual(usage(0, 0));
      expect(d.kv.prefixStats()).toEqual({ queries: 0, hits: 0 });
    });

    it('keeps integrity and exact KV content over a seeded random workload', () => {
      randomWorkload(make({ blockSize: BS, numBlocks: 24, enablePrefixCaching: true }), 20240611, 3000);
    });
  });
}

/**
 * Random admissions, chunked prefills, decodes, preemptions, finishes and resets. A simulated
 * KV pool records which prefix each slot holds; every computed token of every live sequence
 * must read back its own prefix (so a hit or a shared block never carries another prefix's KV).
 */
function randomWorkload(kv: KvCacheManager, seed: number, numOps: number): void {
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const bs = kv.config.blockSize;
  const slots = new Array<string | undefined>(kv.config.numBlocks * bs);
  const templates = [range(0, 8), range(0, 12), range(50, 61), [7, 7, 7, 7, 7, 7, 7, 7, 7]];
  const live: Sequence[] = [];
  const waiting: Sequence[] = [];
  let numRejected = 0;

  const contents = (s: Sequence) => {
    let acc = s.cacheSalt ?? '';
    return prefixKeys(s).map((k) => (acc += `,${k}`));
  };
  const slot = (s: Sequence, p: number) => kv.blockTable(s)[Math.floor(p / bs)] * bs + (p % bs);
  const verify = (s: Sequence) => {
    const want = contents(s);
    const bad = want.findIndex((w, p) => p < s.numComputedTokens && slots[slot(s, p)] !== w);
    expect(bad, `sequence ${s.id} token ${bad} reads another prefix's KV`).toBe(-1);
  };
  const run = (s: Sequence, n: number) => {
    const want = contents(s);
    for (let p = s.numComputedTokens; p < s.numComputedTokens + n; p++) slots[slot(s, p)] = want[p];
    s.numComputedTokens += n;
    kv.commit(s);
  };
  const remove = (s: Sequence) => {
    kv.free(s);
    live.splice(live.indexOf(s), 1);
  };
  const newSeq = () => {
    const tail = Array.from({ length: Math.floor(rand() * 9) }, () => pick([1, 2, 3, 60]));
    const mm = rand() < 0.2 ? [{ hash: pick(['p', 'q']), offset: 2, length: 4 }] : [];
    return seqOf([...pick(templates), ...tail], { cacheSalt: pick([undefined, undefined, 'x']), mm });
  };

  for (let op = 0; op < numOps; op++) {
    const r = rand();
    if (r < 0.3 && live.length < 8) {
      const s = waiting.length > 0 && rand() < 0.5 ? waiting.shift()! : newSeq();
      const hit = kv.matchPrefix(s);
      expect(hit % bs === 0 && hit <= Math.max(0, s.length - 1)).toBe(true);
      const n = Math.min(s.length - hit, 1 + Math.floor(rand() * 12));
      const can = kv.canAllocate(s, n, hit);
      expect(kv.allocate(s, n, hit)).toBe(can);
      if (can) {
        s.numComputedTokens = hit;
        live.push(s);
        verify(s);
        run(s, n);
      } else {
        numRejected++;
        waiting.push(s);
      }
    } else if (r < 0.4 && live.length < 7) {
      // One step admitting two sequences with a shared prompt: the first commits its blocks
      // ahead, the second hits them, and reads them only after the step wrote them.
      const a = newSeq();
      const ha = kv.matchPrefix(a);
      const na = a.length - ha;
      if (!kv.canAllocate(a, na, ha)) continue;
      expect(kv.allocate(a, na, ha)).toBe(true);
      a.numComputedTokens = ha;
      live.push(a);
      kv.commit(a, a.length);
      kv.checkIntegrity();
      const b = seqOf([...a.promptIds, 1, 2, 3, 4, 5], { cacheSalt: a.cacheSalt, mm: [...a.mm] });
      const hb = kv.matchPrefix(b);
      expect(
        hb,
        'a sequence admitted in the same step hits the blocks committed ahead',
      ).toBeGreaterThanOrEqual(Math.floor(a.length / bs) * bs);
      const nb = b.length - hb;
      const admitB = kv.canAllocate(b, nb, hb);
      expect(kv.allocate(b, nb, hb)).toBe(admitB);
      if (admitB) {
        b.numComputedTokens = hb;
        live.push(b);
      }
      run(a, na);
      if (admitB) run(b, nb);
    } else if (r < 0.8 && live.length > 0) {
      const s = pick(live);
      if (s.numUncomputedTokens === 0) s.outputIds.push(pick([1, 2, 60, 61]));
      const n = Math.min(s.numUncomputedTokens, 1 + Math.floor(rand() * 6));
      const can = kv.canAllocate(s, n);
      expect(kv.allocate(s, n)).toBe(can);
      if (can) run(s, n);
      if (!can || s.length >= 40) remove(s);
      if (!can) {
        s.numComputedTokens = 0;
        waiting.push(s);
      }
    } else if (r < 0.95 && live.length > 0) {
      remove(pick(live));
    } else if (r < 0.97) {
      kv.reset();
    }
    kv.checkIntegrity();
    for (const s of live) verify(s);
    const u = kv.usage();
    expect(u.numUsedBlocks + u.numCachedBlocks + u.numFreeBlocks).toBe(u.numBlocks);
  }

  for (const s of [...live]) remove(s);
  kv.checkIntegrity();
  const end = kv.usage();
  expect(end.numUsedBlocks).toBe(0);
  expect(end.numCachedBlocks + end.numFreeBlocks).toBe(end.numBlocks);
  kv.reset();
  expect(kv.usage()).toEqual(usage(0, 0, kv.config.numBlocks));
  expect(kv.prefixStats().hits).toBeGreaterThan(0);
  expect(numRejected).toBeGreaterThan(0);
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
