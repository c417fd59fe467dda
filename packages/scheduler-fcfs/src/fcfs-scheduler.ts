import {
  fitsInPool,
  QueuedScheduler,
  type ScheduledSequence,
  type SchedulerOutput,
  type Sequence,
} from '@switchyard/core';

/**
 * Request-level (static) batching, the baseline. When nothing runs, admits waiting sequences in
 * policy order (arrival under 'fcfs'), reserving each one's whole KV (prompt + max tokens) up
 * front; then runs that batch until every member finished: prefill steps, then decode steps.
 * Never preempts. A sequence whose reservation exceeds the whole pool is finished with 'error'.
 */
export class FcfsScheduler extends QueuedScheduler {
  readonly name = 'fcfs';
  schedule(): SchedulerOutput {
    if (this.queues.running.length === 0) this.admitBatch();
    const batch = this.queues.running.toArray();
    const prefilling = batch.filter((s) => s.numComputedTokens < s.numPromptTokens);
    const scheduled = prefilling.length > 0 ? this.prefill(prefilling) : this.decode(batch);
    this.queues.commitAhead(scheduled);
    const numBatchedTokens = scheduled.reduce((sum, s) => sum + s.numNewTokens, 0);
    return { scheduled, preempted: [], numBatchedTokens };
  }

  /**
   * Admits the batch. A prompt that the first prefill step will run whole (the same pick as
   * `prefill`) is committed ahead, so later members of the batch share its prefix in that step.
   */
  private admitBatch(): void {
    const { maxNumSeqs, maxModelLen } = this.config;
    let budget = this.config.maxNumBatchedTokens;
    for (const seq of this.policy.order(this.queues.waiting.toArray(), this.kv)) {
      if (this.queues.running.length >= maxNumSeqs) break;
      const reservation = Math.min(seq.maxLength, maxModelLen);
      if (!fitsInPool(this.kv, reservation)) {
        this.queues.reject(seq);
        continue;
      }
      const hit = this.kv.matchPrefix(seq);
      if (!this.kv.allocate(seq, reservation - hit, hit)) break;
      this.queues.admit(seq, hit);
      const prompt = seq.numUncomputedTokens;
      if (prompt <= budget) {
        this.queues.commitAhead([{ seq, numNewTokens: prompt }]);
        budget -= prompt;
      }
    }
  }

  /** Whole prompts while they fit the budget; a prompt larger than the whole budget goes in chunks. */
  private prefill(seqs: readonly Sequence[]): ScheduledSequence[] {
    let budget = this.config.maxNumBatchedTokens;
    const scheduled: ScheduledSequence[] = [];
    for (const seq of seqs) {
      const n = seq.numUncomputedTokens;
      if (n <= budget) {
        scheduled.push({ seq, numNewTokens: n });
        budget -= n;
      } else if (scheduled.length === 0) {
        scheduled.push({ seq, numNewTokens: budget });
        break;
      }
    }
    return scheduled;
  }

  private decode(batch: readonly Sequence[]): ScheduledSequence[] {
    return batch.slice(0, this.config.maxNumBatchedTokens).map((seq) => ({ seq, numNewTokens: 1 }));
  }
}
