/** One sequence's share of a step: its new tokens and where its KV lives. */
export interface StepSequence {
  /** The tokens run this step (positions `start .. start + tokenIds.length - 1`). */
  tokenIds: ArrayLike<number>;
  /** Position of the first new token = tokens of this sequence already in the KV cache. */
  start: number;
  /** Physical blocks of the sequence, covering at least `start + tokenIds.length` tokens. */
  blockTable: readonly number[];
  /** Whether to return logits for the last new token. */
  sample: boolean;
  /**
   * Return logits for every new token, not only the last (prompt logprobs): the sequence then
   * takes `tokenIds.length` rows of the result instead of one (or none).
   */
  allLogits?: boolean;
  /**
   * Images of the sequence: their embeddings ([length × hidden]) replace the token embeddings at
   * positions `offset .. offset + length - 1` (models whose decoder takes image embeddings).
   */
  mm?: readonly { offset: number; length: number; embeddings?: Float32Array }[];
}

/** Whether an executor can run steps: 'restarting' after its thread or process died, 'failed' once it stays down. */
export interface ExecutorHealth {
  status: 'ok' | 'restarting' | 'failed';
  /** Why it is not 'ok': the death being recovered from, or why it is not restarted again. */
  reason?: string;
  /** Times it was started again after dying. */
  numRestarts: number;
}

export interface KvPoolShape {
  numBlocks: number;
  blockSize: number;
}

/**
 * Runs the model: owns the sessions and the physical KV pool. One `run` per engine step; it reads
 * the batch's cached KV from the pool and writes the new tokens' KV into it at their slots.
 * Within a step, every new token's K/V counts as written before any attention reads: a sequence's
 * cached positions may lie in blocks another sequence of the same batch computes in this step
 * (prefix sharing within a step, see `KvCacheManager.commit`), and must read those new values.
 */
export interface Executor {
  readonly device: string;
  readonly vocabSize: number;
  /** Bytes of KV one cached token takes: 2 × layers × kv heads × head dim × bytes per element. */
  readonly kvBytesPerToken: number;
  readonly pool: KvPoolShape;
  /**
   * Logits in batch order: one row per sampled sequence, or one per new token for a sequence with
   * `allLogits` ([rows × vocabSize]).
   */
  run(batch: readonly StepSequence[]): Promise<Float32Array>;
  /**
   * Only the argmax token of each sampled sequence, when every one of them samples greedily:
   * providers that can pick it on the device skip reading the logits back.
   */
  runGreedy?(batch: readonly StepSequence[]): Promise<Int32Array>;
  /** Whether it can run steps (absent: always 'ok'; see `IsolatedExecutor`). */
  health?(): ExecutorHealth;
  /**
   * Why the KV pool was lost since the last call, once (its process died and was restarted with an
   * empty pool), else undefined. The engine then fails every request holding KV and resets the KV
   * manager, so no block table or cached prefix points into the lost pool.
   */
  takeLostPool?(): Error | undefined;
  dispose(): Promise<void>;
}
