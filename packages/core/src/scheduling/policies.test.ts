import { describe, expect, it } from 'vitest';
import type { KvCacheManager } from '../kv-cache.js';
import { DEFAULT_SAMPLING } from '../sampling-params.js';
import { Sequence } from '../sequence.js';
import { LPM_MAX_QUEUE, queuePolicies } from './policies.js';

const seq = (id: string, arrivalTime: number, priority = 0) =>
  new Sequence(id, [1, 2, 3], DEFAULT_SAMPLING, { arrivalTime, priority });
const ids = (seqs: readonly Sequence[]) => seqs.map((s) => s.id);
const kvWithHits = (hits: Record<string, number>) =>
  ({ matchPrefix: (s: Sequence) => hits[s.id] ?? 0 }) as unknown as KvCacheManager;

// Queue order as the scheduler keeps it: arrival, with preempted 'p' (arrived at 1) back in front.
const waiting = [seq('p', 1, 2), seq('a', 0, 1), seq('b', 2, 0), seq('c', 3, 1)];
const kv = kvWithHits({ b: 16, c: 16, a: 8 });

describe('queue policies', () => {
  it.each([
    ['fcfs', ['p', 'a', 'b', 'c']],
    ['priority', ['b', 'a', 'c', 'p']],
    ['lpm', ['b', 'c', 'a', 'p']],
  ])('%s orders the waiting queue', (name, expected) => {
    expect(ids(queuePolicies.get(name).order(waiting, kv))).toEqual(expected);
  });

  it('order returns a new array and leaves the queue alone', () => {
    const copy = [...waiting];
    expect(queuePolicies.get('priority').order(waiting, kv)).not.toBe(waiting);
    expect(waiting).toEqual(copy);
  });

  it(`lpm keeps queue order above ${LPM_MAX_QUEUE} waiting, without matching`, () => {
    const many = Array.from({ length: LPM_MAX_QUEUE + 1 }, (_, i) => seq(`s${i}`, i));
    const probe = { matchPrefix: () => expect.unreachable() } as unknown as KvCacheManager;
    expect(queuePolicies.get('lpm').order(many, probe)).toEqual(many);
  });

  it.each([
    ['fcfs', 'c'],
    ['lpm', 'c'],
    ['priority', 'p'],
  ])('%s picks the preemption victim', (name, expected) => {
    expect(queuePolicies.get(name).victim(waiting).id).toBe(expected);
  });

  it('priority picks the latest arrival among equal lowest priorities as victim', () => {
    const running = [seq('x', 5, 3), seq('y', 9, 3), seq('z', 7, 3)];
    expect(queuePolicies.get('priority').victim(running).id).toBe('y');
  });

  it('an unknown name lists the known ones', () => {
    expect(() => queuePolicies.get('sjf')).toThrow("unknown queue policy 'sjf'; known: fcfs, lpm, priority");
  });
});
