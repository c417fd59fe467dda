import type { SamplingParams } from './sampling-params.js';

export type SequenceStatus = 'waiting' | 'running' | 'finished';
export type FinishReason = 'stop' | 'length' | 'abort' | 'error';

/** An image (or other media) standing in the prompt at `offset` for `length` placeholder tokens. */
export interface MultimodalItem {
  /** Content hash of the source bytes; enters the prefix-cache key. */
  hash: string;
  offset: number;
  length: number;
  /** The image's embeddings, [length × hidden], which replace the placeholders' token embeddings. */
  embeddings?: Float32Array;
}

export interface TokenLogprob {
  token: number;
  logprob: number;
  /** 1-based rank of `token` among the whole vocabulary (set for prompt logprobs). */
  rank?: number;
  top: { token: number; logprob: number }[];
}

let nextSeqNum = 0;

/**
 * One sequence of tokens moving through the engine. The scheduler and KV manager see only this;
 * a request with `n > 1` owns several.
 *
 * One token-count model: `numComputedTokens` counts the leading tokens whose KV is in the cache.
 * Each step advances it toward `length` (prefill chunks, prefix hits and decode alike); a
 * preemption by recompute sets it back to 0.
 */
export class Sequence {
  readonly num = nextSeqNum++;
  outputIds: number[] = [];
  outputLogprobs: TokenLogprob[] = [];
  numComputedTokens = 0;
  /** Tokens of the prompt found in the prefix cache when the sequence was first admitted. */
  numCachedTokens = 0;
  status: SequenceStatus = 'waiting';
  finishReason?: FinishReason;
  /** What stopped it with reason 'stop': the stop string or stop token id; undefined for EOS. */
  stopReason?: string | number;
  numPreemptions = 0;
  readonly arrivalTime: number;
  firstScheduledTime?: number;
  firstTokenTime?: number;
  lastTokenTime?: number;
  finishedTime?: number;

  constructor(
    readonly id: string,
    readonly promptIds: readonly number[],
    readonly sampling: SamplingParams,
    readonly options: {
      mm?: readonly MultimodalItem[];
      priority?: number;
      cacheSalt?: string;
      arrivalTime?: number;
    } = {},
  ) {
    this.arrivalTime = options.arrivalTime ?? performance.now();
  }

  get mm(): readonly MultimodalItem[] {
    return this.options.mm ?? [];
  }

  /** Lower runs first under the `priority` policy (as in vLLM). */
  get priority(): number {
    return this.options.priority ?? 0;
  }

  get cacheSalt(): string | undefined {
    return this.options.cacheSalt;
  }

  get numPromptTokens(): number {
    return this.promptIds.length;
  }

  get length(): number {
    return this.promptIds.length + this.outputIds.length;
  }

  get isFinished(): boolean {
    return this.status === 'finished';
  }

  tokenAt(i: number): number {
    const p = this.promptIds.length;
    return i < p ? this.promptIds[i] : this.outputIds[i - p];
  }

  /** All tokens: prompt then output. Allocates; prefer `tokenAt` in hot paths. */
  tokenIds(): number[] {
    return [...this.promptIds, ...this.outputIds];
  }

  /** Tokens the sequence must still run through the model before it can sample again. */
  get numUncomputedTokens(): number {
    return this.length - this.numComputedTokens;
  }

  /** Worst-case tokens this sequence can reach: prompt plus the rest of its output budget. */
  get maxLength(): number {
    return this.promptIds.length + this.sampling.maxTokens;
  }
}
