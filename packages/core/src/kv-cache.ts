import type { Sequence } from './sequence.js';

export interface KvCacheConfig {
  /** Tokens per block (page). */
  blockSize: number;
  /** Physical blocks in the pool. Block ids are 0..numBlocks-1; slot = block * blockSize + offset. */
  numBlocks: number;
  /** Reuse KV across sequences with equal prefixes. */
  enablePrefixCaching: boolean;
}

export interface KvUsage {
  numBlocks: number;
  /** Blocks referenced by at least one live sequence. */
  numUsedBlocks: number;
  /** Unreferenced blocks that still hold reusable prefix KV (evictable). */
  numCachedBlocks: number;
  /** Blocks holding nothing. */
  numFreeBlocks: number;
}

export interface PrefixCacheStats {
  /** Tokens looked up in the prefix cache: a sequence's length at each admission (again after a preemption, as vLLM counts). */
  queries: number;
  /** Of those, tokens whose KV was reused. */
  hits: number;
}

/**
 * The KV cache manager: owns the mapping from sequences to physical blocks of the pool (the pool
 * itself lives in the executor). Implemented by the attention packages.
 *
 * Protocol, per step, driven by the scheduler:
 * - `matchPrefix(seq)` (pure) tells how many leading tokens of a new sequence are cached;
 * - `allocate(seq, n, hit)` makes room for `n` more tokens beyond `seq.numComputedTokens`; for a
 *   sequence the manager has not seen it first acquires the `hit` cached tokens (as matchPrefix
 *   returned them) and sets `seq.numComputedTokens = hit`. Returns false, changing nothing, when
 *   the pool has no room; the scheduler then preempts and retries;
 * - after the step ran, the scheduler advances `seq.numComputedTokens` and calls `commit(seq)`,
 *   which makes the now-computed full blocks findable by later prefix matches;
 * - `free(seq)` releases the sequence's references (finish, abort, preemption); a no-op for a
 *   sequence holding none.
 *
 * `matchPrefix` and the `allocate` that uses its hit must run back to back: another allocation in
 * between may evict the matched blocks, and `allocate` then throws. A `hit` passed for a sequence
 * the manager already holds is ignored. `seq.numCachedTokens` is the engine's to set.
 */
export interface KvCacheManager {
  readonly config: KvCacheConfig;

  /**
   * Number of leading tokens of `seq` whose KV can be reused, a multiple of the block size and
   * at most `seq.length - 1` (the last token is always recomputed for its logits). 0 for a
   * sequence that already holds blocks. Changes nothing.
   */
  matchPrefix(seq: Sequence): number;

  /** Blocks that `allocate(seq, numNewTokens, hit)` would take from the free/evictable pool. */
  numBlocksNeeded(seq: Sequence, numNewTokens: number, hit?: number): number;

  /** Whether `allocate` would succeed now. */
  canAllocate(seq: Sequence, numNewTokens: number, hit?: number): boolean;

  /** See the protocol above. Mutates the pool and, for a new sequence, `seq.numComputedTokens`. */
  allocate(seq: Sequence, numNewTokens: number, hit?: number): boolean;

  /** Registers the sequence's computed full blocks in the prefix index. */
  commit(seq: Sequence): void;

  /** Releases every block reference the sequence holds (tail blocks first become evictable first). */
  free(seq: Sequence): void;

  /**
   * Physical block ids of the sequence, in token order. A live view: `commit` may swap an entry
   * for an equal block already cached (radix deduplication), so read it afresh every step.
   */
  blockTable(seq: Sequence): readonly number[];

  usage(): KvUsage;
  prefixStats(): PrefixCacheStats;

  /** Throws if the bookkeeping is inconsistent (free + cached + used ≠ total, bad refcounts …). */
  checkIntegrity(): void;

  /** Drops all cached (unreferenced) prefix blocks; the hit/query counters are kept. */
  reset(): void;
}

export type KvCacheManagerFactory = (config: KvCacheConfig) => KvCacheManager;
