import type { StepSequence } from '../executor.js';

/** Sizes of a step: packed tokens, sequences, logits rows, longest query and key lengths. */
export interface StepShape {
  T: number;
  B: number;
  /** Rows of logits the step returns: one per sampling sequence, every token of an `allLogits` one. */
  S: number;
  maxQ: number;
  maxKv: number;
}

export function stepShape(batch: readonly StepSequence[]): StepShape {
  let T = 0;
  let S = 0;
  let maxQ = 0;
  let maxKv = 0;
  for (const s of batch) {
    T += s.tokenIds.length;
    if (s.allLogits) S += s.tokenIds.length;
    else if (s.sample) S++;
    maxQ = Math.max(maxQ, s.tokenIds.length);
    maxKv = Math.max(maxKv, s.start + s.tokenIds.length);
  }
  return { T, B: batch.length, S, maxQ, maxKv };
}
