import type { KvCacheManager } from './kv-cache.js';
import type { Sequence } from './sequence.js';

export interface SchedulerConfig {
  /** Most sequences in one step. */
  maxNumSeqs: number;
  /** Most tokens (over all sequences) in one step. */
  maxNumBatchedTokens: number;
  /** Longest sequence the model accepts (prompt + output). */
  maxModelLen: number;
  /** Split long prompts across steps (continuous scheduler). */
  enableChunkedPrefill: boolean;
  /** Queue order: 'fcfs', 'lpm' (longest prefix match), 'priority'. */
  policy: string;
}

export interface ScheduledSequence {
  seq: Sequence;
  /** Tokens `[seq.numComputedTokens, seq.numComputedTokens + numNewTokens)` run this step. */
  numNewTokens: number;
}

/** What one step runs: plain data, no tensors. */
export interface SchedulerOutput {
  scheduled: ScheduledSequence[];
  /** Sequences sent back to waiting this step (their KV freed, to be recomputed). */
  preempted: Sequence[];
  numBatchedTokens: number;
}

/**
 * A scheduler decides, every step, which sequences run and how many tokens each. It owns the
 * waiting and running queues and talks to the KV manager; it never touches tensors.
 */
export interface Scheduler {
  readonly name: string;
  add(seq: Sequence): void;
  /** Removes the sequence wherever it is, frees its KV; returns it if it was known. */
  abort(seqId: string): Sequence | undefined;
  schedule(): SchedulerOutput;
  /**
   * After the step ran and the engine appended sampled tokens (marking finished sequences with
   * `status = 'finished'`): advances `numComputedTokens`, commits KV, frees finished sequences.
   */
  update(output: SchedulerOutput): void;
  numWaiting(): number;
  numRunning(): number;
  hasUnfinished(): boolean;
  readonly numPreemptions: number;
}

export type SchedulerFactory = (config: SchedulerConfig, kv: KvCacheManager) => Scheduler;

export const DEFAULT_SCHEDULER_CONFIG: SchedulerConfig = {
  maxNumSeqs: 64,
  maxNumBatchedTokens: 2048,
  maxModelLen: 2048,
  enableChunkedPrefill: true,
  policy: 'fcfs',
};
