import type { KvCacheManager } from '../kv-cache.js';
import type { Scheduler, SchedulerConfig, SchedulerOutput } from '../scheduler.js';
import type { Sequence } from '../sequence.js';
import { type QueuePolicy, queuePolicies } from './policies.js';
import { RequestQueues } from './queue.js';

/**
 * The part every queue-based scheduler shares: the waiting and running queues, the queue policy,
 * add, abort, the post-step update and the counters. A subclass decides admission, batching and preemption in
 * `schedule()` (and counts its preemptions in `preemptions`).
 */
export abstract class QueuedScheduler implements Scheduler {
  abstract readonly name: string;
  protected readonly queues: RequestQueues;
  /** The queue order named by `config.policy` (an unknown name lists the known ones). */
  protected readonly policy: QueuePolicy;
  protected preemptions = 0;

  constructor(
    readonly config: SchedulerConfig,
    protected readonly kv: KvCacheManager,
  ) {
    this.queues = new RequestQueues(kv);
    this.policy = queuePolicies.get(config.policy);
  }

  abstract schedule(): SchedulerOutput;

  get numPreemptions(): number {
    return this.preemptions;
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
}
