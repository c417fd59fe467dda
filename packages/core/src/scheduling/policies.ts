import type { KvCacheManager } from '../kv-cache.js';
import { Registry } from '../registry.js';
import type { Sequence } from '../sequence.js';

/**
 * A queue policy: the order in which waiting sequences are admitted (recomputed every step) and
 * which running sequence is preempted first when the KV pool is full. Each is a sort key.
 */
export interface QueuePolicy {
  readonly name: string;
  /** The waiting sequences in admission order: a new array; changes nothing. */
  order(waiting: readonly Sequence[], kv: KvCacheManager): Sequence[];
  /** The sequence of a non-empty running list to preempt first. */
  victim(running: readonly Sequence[]): Sequence;
}

/** Above this many waiting sequences 'lpm' falls back to queue order (matching costs; SGLang does the same). */
export const LPM_MAX_QUEUE = 128;

const byArrival = (a: Sequence, b: Sequence) => a.arrivalTime - b.arrivalTime;
const byPriority = (a: Sequence, b: Sequence) => a.priority - b.priority || byArrival(a, b);
const newest = (running: readonly Sequence[]) => running[running.length - 1];

/** Queue order: arrival, with preempted sequences put back in front. Preempts the newest admitted. */
export const fcfsPolicy: QueuePolicy = {
  name: 'fcfs',
  order: (waiting) => [...waiting],
  victim: newest,
};

/** Lower `seq.priority` first, then arrival. Preempts the lowest priority, latest arrival (as vLLM). */
export const priorityPolicy: QueuePolicy = {
  name: 'priority',
  order: (waiting) => [...waiting].sort(byPriority),
  victim: (running) => running.reduce((v, s) => (byPriority(s, v) >= 0 ? s : v)),
};

/** Longest cached prefix first (SGLang's cache-aware 'lpm'), then arrival. Preempts the newest admitted. */
export const lpmPolicy: QueuePolicy = {
  name: 'lpm',
  order(waiting, kv) {
    if (waiting.length > LPM_MAX_QUEUE) return [...waiting];
    const hit = new Map(waiting.map((s) => [s, kv.matchPrefix(s)]));
    return [...waiting].sort((a, b) => hit.get(b)! - hit.get(a)! || byArrival(a, b));
  },
  victim: newest,
};

/** Queue policies by name (`SchedulerConfig.policy`); an unknown name lists the known ones. */
export const queuePolicies = new Registry<QueuePolicy>('queue policy');
for (const p of [fcfsPolicy, priorityPolicy, lpmPolicy]) queuePolicies.register(p.name, p);
