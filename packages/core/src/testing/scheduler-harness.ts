/** Drives a scheduler without a model: the test helpers both scheduler packages share. */

import { expect } from 'vitest';
import type { KvCacheManager } from '../kv-cache.js';
import { DEFAULT_SAMPLING } from '../sampling-params.js';
import {
  DEFAULT_SCHEDULER_CONFIG,
  type Scheduler,
  type SchedulerConfig,
  type SchedulerOutput,
} from '../scheduler.js';
import { Sequence } from '../sequence.js';

export const schedulerConfig = (o: Partial<SchedulerConfig> = {}): SchedulerConfig => ({
  ...DEFAULT_SCHEDULER_CONFIG,
  ...o,
});

let clock = 0;

/** A sequence with `promptLen` prompt tokens 1000, 1001, … (`prompt` overrides them), arriving after the last. */
export function makeSeq(
  id: string,
  promptLen: number,
  maxTokens: number,
  o: { priority?: number; prompt?: number[] } = {},
): Sequence {
  const prompt = o.prompt ?? Array.from({ length: promptLen }, (_, i) => 1000 + i);
  return new Sequence(
    id,
    prompt,
    { ...DEFAULT_SAMPLING, maxTokens },
    { priority: o.priority, arrivalTime: clock++ },
  );
}

/**
 * One engine step with a fake model: a sequence whose step reaches its end samples token 1 and
 * finishes at max tokens or maxModelLen. Checks the step's invariants and the KV integrity.
 */
export function step(s: Scheduler, kv: KvCacheManager, cfg: SchedulerConfig): SchedulerOutput {
  const out = s.schedule();
  const tokens = out.scheduled.reduce((sum, x) => sum + x.numNewTokens, 0);
  expect(out.numBatchedTokens).toBe(tokens);
  expect(tokens).toBeLessThanOrEqual(cfg.maxNumBatchedTokens);
  expect(out.scheduled.length).toBeLessThanOrEqual(cfg.maxNumSeqs);
  expect(new Set(out.scheduled.map((x) => x.seq)).size).toBe(out.scheduled.length);
  for (const { seq, numNewTokens } of out.scheduled) {
    expect(numNewTokens).toBeGreaterThan(0);
    expect(seq.status).toBe('running');
    expect(seq.numComputedTokens + numNewTokens).toBeLessThanOrEqual(seq.length);
    expect(kv.blockTable(seq).length * kv.config.blockSize).toBeGreaterThanOrEqual(
      seq.numComputedTokens + numNewTokens,
    );
  }
  for (const seq of out.preempted) expect([seq.status, seq.numComputedTokens]).toEqual(['waiting', 0]);
  for (const { seq, numNewTokens } of out.scheduled) {
    if (seq.numComputedTokens + numNewTokens < seq.length) continue;
    seq.outputIds.push(1);
    if (seq.outputIds.length >= seq.sampling.maxTokens || seq.length >= cfg.maxModelLen) {
      seq.status = 'finished';
      seq.finishReason = 'length';
    }
  }
  s.update(out);
  kv.checkIntegrity();
  return out;
}

/** Steps until nothing is unfinished; returns every step's output. */
export function run(
  s: Scheduler,
  kv: KvCacheManager,
  cfg: SchedulerConfig,
  maxSteps = 10_000,
): SchedulerOutput[] {
  const outs: SchedulerOutput[] = [];
  while (s.hasUnfinished()) {
    if (outs.length >= maxSteps) throw new Error(`not done after ${maxSteps} steps`);
    outs.push(step(s, kv, cfg));
  }
  return outs;
}

/** Every block free or cached: nothing referenced. */
export function expectAllFree(kv: KvCacheManager): void {
  kv.checkIntegrity();
  expect(kv.usage().numUsedBlocks).toBe(0);
}
