import type { KvCacheManager } from '../kv-cache.js';
import type { ScheduledSequence, SchedulerOutput } from '../scheduler.js';
import type { Sequence } from '../sequence.js';

/** Sequences in order, with lookup by id. An array underneath: queues here hold hundreds, not millions. */
export class SequenceQueue implements Iterable<Sequence> {
  private readonly items: Sequence[] = [];
  private readonly byId = new Map<string, Sequence>();

  get length(): number {
    return this.items.length;
  }

  get(id: string): Sequence | undefined {
    return this.byId.get(id);
  }

  has(seq: Sequence): boolean {
    return this.byId.get(seq.id) === seq;
  }

  push(seq: Sequence): void {
    this.byId.set(seq.id, seq);
    this.items.push(seq);
  }

  pushFront(seq: Sequence): void {
    this.byId.set(seq.id, seq);
    this.items.unshift(seq);
  }

  remove(seq: Sequence): boolean {
    if (!this.has(seq)) return false;
    this.byId.delete(seq.id);
    this.items.splice(this.items.indexOf(seq), 1);
    return true;
  }

  /** The live backing array, in queue order: do not mutate; copy it before mutating the queue. */
  toArray(): readonly Sequence[] {
    return this.items;
  }

  [Symbol.iterator](): Iterator<Sequence> {
    return this.items[Symbol.iterator]();
  }
}

/** Whether KV for `numTokens` tokens fits the whole pool (with nothing else holding blocks). */
export function fitsInPool(kv: KvCacheManager, numTokens: number): boolean {
  return Math.ceil(numTokens / kv.config.blockSize) <= kv.config.numBlocks;
}

/**
 * The waiting and running queues of a scheduler, and what every scheduler does with them alike:
 * add, admit, reject, abort and the post-step update. Schedulers differ in admission and preemption.
 * Every sequence that holds KV blocks is in `running`.
 */
export class RequestQueues {
  readonly waiting = new SequenceQueue();
  readonly running = new SequenceQueue();

  constructor(private readonly kv: KvCacheManager) {}

  /** Appends a new sequence to the back of `waiting`. */
  add(seq: Sequence): void {
    if (this.waiting.get(seq.id) || this.running.get(seq.id)) {
      throw new Error(`sequence '${seq.id}' is already scheduled`);
    }
    seq.status = 'waiting';
    this.waiting.push(seq);
  }

  /**
   * Moves `seq`, whose KV the caller just allocated with `hit` cached tokens, from waiting to
   * running: its computed tokens become `hit` (and, at its first admission, its cached tokens).
   */
  admit(seq: Sequence, hit: number): void {
    this.waiting.remove(seq);
    this.running.push(seq);
    seq.status = 'running';
    seq.numComputedTokens = hit;
    if (seq.numPreemptions === 0) seq.numCachedTokens = hit;
  }

  /**
   * Commits the scheduled tokens' full blocks ahead of the step (see `KvCacheManager.commit`), so
   * sequences admitted after them in this step hit them. Only for sequences sure to run.
   */
  commitAhead(scheduled: readonly ScheduledSequence[]): void {
    for (const { seq, numNewTokens } of scheduled) this.kv.commit(seq, seq.numComputedTokens + numNewTokens);
  }

  /** Drops a waiting sequence that can never run, marking it finished with reason 'error'. */
  reject(seq: Sequence): void {
    this.waiting.remove(seq);
    finish(seq, 'error');
  }

  /** Removes a waiting or running sequence, frees its KV and marks it finished with reason 'abort'. */
  abort(seqId: string): Sequence | undefined {
    const seq = this.waiting.get(seqId) ?? this.running.get(seqId);
    if (!seq) return undefined;
    if (this.running.remove(seq)) this.kv.free(seq);
    else this.waiting.remove(seq);
    finish(seq, 'abort');
    return seq;
  }

  /**
   * After a step: advances `numComputedTokens`, commits KV, and frees and drops the sequences the
   * engine marked finished. Sequences aborted since `schedule()` are skipped.
   */
  update(output: SchedulerOutput): void {
    for (const { seq, numNewTokens } of output.scheduled) {
      if (!this.running.has(seq)) continue;
      seq.numComputedTokens += numNewTokens;
      this.kv.commit(seq);
      if (seq.isFinished) {
        this.kv.free(seq);
        this.running.remove(seq);
      }
    }
  }

  hasUnfinished(): boolean {
    return this.waiting.length + this.running.length > 0;
  }
}

function finish(seq: Sequence, reason: 'abort' | 'error'): void {
  seq.status = 'finished';
  seq.finishReason = reason;
  seq.finishedTime = performance.now();
}
