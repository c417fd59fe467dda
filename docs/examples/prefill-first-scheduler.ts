/**
 * A scheduler written outside Switchyard's packages: prefill-first batching as vLLM v0 and Orca
 * did it. A step either prefills newly admitted prompts (whole, never chunked) or decodes every
 * running sequence — never both — so a burst of new prompts stalls decoding. It is here to be
 * measured against the built-in 'continuous' scheduler, and to show the four things a scheduler
 * does: order the queue, admit within the KV pool, pick tokens per step, and update after it.
 */
import {
  type DependencyContainer,
  type KvCacheManager,
  RequestQueues,
  type ScheduledSequence,
  type Scheduler,
  type SchedulerConfig,
  type SchedulerOutput,
  type Sequence,
  schedulerRegistry,
} from '@switchyard/core';

export class PrefillFirstScheduler implements Scheduler {
  readonly name = 'prefill-first';
  readonly numPreemptions = 0;
  private readonly queues: RequestQueues;

  constructor(
    private readonly config: SchedulerConfig,
    private readonly kv: KvCacheManager,
  ) {
    this.queues = new RequestQueues(kv);
  }

  add(seq: Sequence): void {
    this.queues.add(seq);
  }

  abort(seqId: string): Sequence | undefined {
    return this.queues.abort(seqId);
  }

  update(output: SchedulerOutput): void {
    this.queues.update(output);
  }

  numWaiting(): number {
    return this.queues.waiting.length;
  }

  numRunning(): number {
    return this.queues.running.length;
  }

  hasUnfinished(): boolean {
    return this.queues.hasUnfinished();
  }

  schedule(): SchedulerOutput {
    const prefill = this.admit();
    const scheduled = prefill.length > 0 ? prefill : this.decode();
    return { scheduled, preempted: [], numBatchedTokens: scheduled.reduce((n, s) => n + s.numNewTokens, 0) };
  }

  /** Admits whole prompts in arrival order, reserving prompt + max tokens so decode never runs out. */
  private admit(): ScheduledSequence[] {
    const { maxNumSeqs, maxNumBatchedTokens, maxModelLen } = this.config;
    const out: ScheduledSequence[] = [];
    let budget = maxNumBatchedTokens;
    for (const seq of this.queues.waiting.toArray()) {
      const hit = this.kv.matchPrefix(seq);
      const prompt = seq.length - hit;
      const reserve = Math.min(seq.maxLength, maxModelLen) - hit;
      if (this.queues.running.length >= maxNumSeqs || prompt > budget) break;
      if (!this.kv.allocate(seq, reserve, hit)) break;
      this.queues.admit(seq);
      out.push({ seq, numNewTokens: prompt });
      budget -= prompt;
    }
    return out;
  }

  private decode(): ScheduledSequence[] {
    return this.queues.running.toArray().map((seq) => ({ seq, numNewTokens: 1 }));
  }
}

/** Adds the scheduler to a container under the name 'prefill-first'. */
export function register(container: DependencyContainer): void {
  schedulerRegistry(container).register(
    'prefill-first',
    (config, kv) => new PrefillFirstScheduler(config, kv),
  );
}
