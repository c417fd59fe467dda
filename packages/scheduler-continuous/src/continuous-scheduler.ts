import {
  fitsInPool,
  QueuedScheduler,
  type ScheduledSequence,
  type SchedulerOutput,
  type Sequence,
} from '@switchyard/core';

/**
 * Iteration-level batching (vLLM v1): every step, within a token budget, running sequences first
 * (in running order), then waiting ones in policy order. No prefill/decode phases: each sequence
 * gets up to its uncomputed tokens (chunked prefill). When the KV pool is full, preempts by
 * recompute: the policy's victim frees its KV and goes back to the front of `waiting`.
 */
export class ContinuousScheduler extends QueuedScheduler {
  readonly name = 'continuous';
  schedule(): SchedulerOutput {
    const { waiting, running } = this.queues;
    const scheduled: ScheduledSequence[] = [];
    const preempted: Sequence[] = [];
    let budget = this.config.maxNumBatchedTokens;

    for (const seq of [...running]) {
      if (budget === 0) break;
      if (seq.status !== 'running') continue; // preempted earlier in this step
      const n = this.numTokens(seq.numUncomputedTokens, budget);
      if (n === 0) continue;
      while (!this.kv.allocate(seq, n)) {
        const victim = this.policy.victim(running.toArray());
        const i = scheduled.findIndex((s) => s.seq === victim);
        if (i >= 0) budget += scheduled.splice(i, 1)[0].numNewTokens;
        this.preempt(victim);
        preempted.push(victim);
        if (victim === seq) break;
      }
      if (seq.status !== 'running') continue;
      scheduled.push({ seq, numNewTokens: n });
      budget -= n;
    }

    // No more preemptions this step: what runs can be committed ahead, for admissions to hit.
    this.queues.commitAhead(scheduled);
    // Admitting while preempting would only evict what was just admitted.
    if (preempted.length === 0) {
      for (const seq of this.policy.order(waiting.toArray(), this.kv)) {
        if (budget === 0 || running.length >= this.config.maxNumSeqs) break;
        const hit = this.kv.matchPrefix(seq);
        if (!this.canEverRun(seq, hit)) {
          this.queues.reject(seq);
          continue;
        }
        const n = this.numTokens(seq.length - hit, budget);
        // Stop at the first that does not fit, so that large sequences are not starved.
        if (n === 0 || !this.kv.allocate(seq, n, hit)) break;
        this.queues.admit(seq, hit);
        scheduled.push({ seq, numNewTokens: n });
        this.queues.commitAhead(scheduled.slice(-1));
        budget -= n;
      }
    }

    return { scheduled, preempted, numBatchedTokens: this.config.maxNumBatchedTokens - budget };
  }

  /** Tokens to run this step for a sequence with `numUncomputed` left; 0 if it must wait. */
  private numTokens(numUncomputed: number, budget: number): number {
    if (numUncomputed > budget && !this.config.enableChunkedPrefill) return 0;
    return Math.min(numUncomputed, budget);
  }

  /** False when the sequence could not run even alone: its KV exceeds the pool, or its prompt the budget. */
  private canEverRun(seq: Sequence, hit: number): boolean {
    const { maxModelLen, maxNumBatchedTokens, enableChunkedPrefill } = this.config;
    if (!fitsInPool(this.kv, Math.min(seq.maxLength, maxModelLen))) return false;
    return enableChunkedPrefill || seq.length - hit <= maxNumBatchedTokens;
  }

  private preempt(seq: Sequence): void {
    this.kv.free(seq);
    this.queues.running.remove(seq);
    this.queues.waiting.pushFront(seq);
    seq.status = 'waiting';
    seq.numComputedTokens = 0;
    seq.numPreemptions++;
    this.preemptions++;
  }
}
