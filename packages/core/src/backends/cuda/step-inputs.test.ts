import { describe, expect, it } from 'vitest';
import type { StepSequence } from '../../executor.js';
import { packDecodeBucket, packedLayout, packStep, stepShape } from './step-inputs.js';

const seq = (tokenIds: number[], start: number, blockTable: number[], sample = true): StepSequence => ({
  tokenIds,
  start,
  blockTable,
  sample,
});

describe('step inputs of the cuda executor', () => {
  it('packs a mixed prefill/decode step: tokens, cumulative lengths, past lengths, tables, sampled rows', () => {
    const batch = [seq([5, 6, 7], 0, [3]), seq([9], 17, [1, 4], true), seq([2, 2], 4, [0], false)];
    const shape = stepShape(batch);
    expect(shape).toEqual({ T: 6, B: 3, S: 2, maxQ: 3, maxKv: 18 });
    const maxBlocks = 3;
    const layout = packedLayout(shape.T, shape.B, shape.S, maxBlocks);
    // 256-byte aligned regions, none overlapping.
    expect(Object.values(layout).every((o) => o % 64 === 0)).toBe(true);
    expect(layout.cu).toBeGreaterThanOrEqual(layout.ids + shape.T);
    expect(layout.sample + shape.S).toBeLessThanOrEqual(layout.total);
    const h = new Int32Array(layout.total).fill(-7);
    packStep(batch, layout, maxBlocks, 16, h);
    expect([...h.subarray(layout.ids, layout.ids + 6)]).toEqual([5, 6, 7, 9, 2, 2]);
    expect([...h.subarray(layout.cu, layout.cu + 4)]).toEqual([0, 3, 4, 6]);
    expect([...h.subarray(layout.past, layout.past + 3)]).toEqual([0, 17, 4]);
    expect([...h.subarray(layout.table, layout.table + 9)]).toEqual([3, 0, 0, 1, 4, 0, 0, 0, 0]);
    expect([...h.subarray(layout.sample, layout.sample + 2)]).toEqual([2, 3]);
  });

  it('returns a row for every token of a sequence that asks for all its logits (prompt logprobs)', () => {
    const batch = [seq([5, 6, 7], 0, [3]), { ...seq([8, 9], 0, [1], false), allLogits: true }];
    const shape = stepShape(batch);
    expect(shape.S).toBe(3);
    const layout = packedLayout(shape.T, shape.B, shape.S, 1);
    const h = new Int32Array(layout.total);
    packStep(batch, layout, 1, 16, h);
    expect([...h.subarray(layout.sample, layout.sample + 3)]).toEqual([2, 3, 4]);
  });

  it('pads a decode batch to its graph bucket with rows that write only the scratch block', () => {
    const batch = [seq([11], 0, [2]), seq([12], 40, [5, 6, 7])];
    const size = 4;
    const maxBlocks = 4;
    const scratch = 99;
    const layout = packedLayout(size, size, size, maxBlocks);
    const h = new Int32Array(layout.total).fill(-7);
    packDecodeBucket(batch, size, layout, maxBlocks, 16, scratch, h);
    expect([...h.subarray(layout.ids, layout.ids + 4)]).toEqual([11, 12, 0, 0]);
    expect([...h.subarray(layout.cu, layout.cu + 5)]).toEqual([0, 1, 2, 3, 4]);
    expect([...h.subarray(layout.past, layout.past + 4)]).toEqual([0, 40, 0, 0]);
    expect([...h.subarray(layout.table, layout.table + 16)]).toEqual([
      2, 99, 99, 99, 5, 6, 7, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    ]);
    expect([...h.subarray(layout.sample, layout.sample + 4)]).toEqual([0, 1, 2, 3]);
    // A later, smaller batch in the same bucket leaves no stale row behind.
    packDecodeBucket([seq([13], 3, [8])], size, layout, maxBlocks, 16, scratch, h);
    expect([...h.subarray(layout.ids, layout.ids + 4)]).toEqual([13, 0, 0, 0]);
    expect([...h.subarray(layout.table, layout.table + 8)]).toEqual([8, 99, 99, 99, 99, 99, 99, 99]);
    expect(() =>
      packDecodeBucket([...batch, ...batch, ...batch], size, layout, maxBlocks, 16, scratch, h),
    ).toThrow(/does not fit a bucket of 4/);
  });
});
