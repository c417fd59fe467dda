/**
 * A scheduler written outside Switchyard's packages: prefill-first batching as vLLM v0 and Orca
 * did it. A step either prefills newly admitted prompts (whole, never chunked) or decodes every
 * running sequence — never both — so a burst of new prompts stalls decoding. It is here to be
 * measured against the built-in 'continuous' scheduler, and to show the four things a scheduler
 * does beyond what `QueuedScheduler` shares (queues, add, abort, update): admit within the KV
 * pool and pick the tokens each sequence runs per step.
 */
import {
  type DependencyContainer,
  QueuedScheduler,
  type ScheduledSequence,
  type SchedulerOutput,
  schedulerRegistry,
} from '@switchyard/core';

export class PrefillFirstScheduler extends QueuedScheduler {
  readonly name = 'prefill-first';

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
      this.queues.admit(seq, hit);
      out.push({ seq, numNewTokens: prompt });
      // Its prompt's blocks are findable at once: the next prompt of this step may share them.
      this.queues.commitAhead(out.slice(-1));
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
