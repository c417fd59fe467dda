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
 * - `allocate(seq, n, hit)` makes room for `n` more tokens beyond what the sequence has computed:
 *   `hit` for a sequence the manager has not seen (it first acquires the `hit` cached tokens, as
 *   matchPrefix returned them), else `seq.numComputedTokens`. Returns false, changing nothing,
 *   when the pool has no room; the scheduler then preempts and retries. On success with a new
 *   sequence the scheduler sets `seq.numComputedTokens = hit`: the manager never writes `Sequence`
 *   state (the scheduler owns `numComputedTokens`);
 * - `commit(seq, numTokens)` makes the sequence's full blocks among its first `numTokens` tokens
 *   findable by prefix matches. The scheduler calls it as soon as it has scheduled the tokens
 *   (numTokens = computed + scheduled), so that a sequence admitted later in the same step hits
 *   blocks this step computes — the executor writes a step's new K/V before any attention of the
 *   step reads them (vLLM's way). It commits only what is sure to run: never a sequence it may
 *   still preempt in the same `schedule()`. After the step it advances `numComputedTokens` and
 *   calls `commit(seq)` again (numTokens defaults to `seq.numComputedTokens`);
 * - `free(seq)` releases the sequence's references (finish, abort, preemption); a no-op for a
 *   sequence holding none.
 *
 * `matchPrefix` and the `allocate` that uses its hit must run back to back: another allocation in
 * between may evict the matched blocks, and `allocate` then throws. A `hit` passed for a sequence
 * the manager already holds is ignored. When a step fails, the engine calls `reset()` once the
 * step's sequences are freed, so blocks committed ahead for it and never written are forgotten.
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

  /** See the protocol above. Mutates the pool, never the sequence. */
  allocate(seq: Sequence, numNewTokens: number, hit?: number): boolean;

  /**
   * Registers the sequence's full blocks among its first `numTokens` tokens (default: its computed
   * ones) in the prefix index; blocks past its computed tokens must be written in the current step.
   */
  commit(seq: Sequence, numTokens?: number): void;

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
