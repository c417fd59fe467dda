import type { StepSequence } from '../../executor.js';

export { type StepShape, stepShape } from '../step-shape.js';

/** int32 elements (256 bytes) between the packed input regions. */
const ALIGN = 64;
const up = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/**
 * Offsets (in int32 elements) of the decoder's int32 inputs inside one packed buffer, each region
 * 256-byte aligned: input_ids [T], cumulative_sequence_length [B+1], past_seqlens [B],
 * block_table [B, maxBlocks], sample_index [S].
 */
export interface PackedLayout {
  ids: number;
  cu: number;
  past: number;
  table: number;
  sample: number;
  /** Elements in all. */
  total: number;
}

export function packedLayout(T: number, B: number, S: number, maxBlocks: number): PackedLayout {
  const ids = 0;
  const cu = up(T);
  const past = cu + up(B + 1);
  const table = past + up(B);
  const sample = table + up(B * maxBlocks);
  return { ids, cu, past, table, sample, total: sample + up(Math.max(S, 1)) };
}

/** Writes a step's inputs into `h` at `layout` (unused block-table entries are 0). */
export function packStep(
  batch: readonly StepSequence[],
  layout: PackedLayout,
  maxBlocks: number,
  blockSize: number,
  h: Int32Array,
): void {
  let t = 0;
  let sampled = 0;
  h[layout.cu] = 0;
  for (let b = 0; b < batch.length; b++) {
    const s = batch[b];
    const ids = s.tokenIds;
    for (let i = 0; i < ids.length; i++) h[layout.ids + t + i] = ids[i];
    t += ids.length;
    h[layout.cu + b + 1] = t;
    h[layout.past + b] = s.start;
    const row = layout.table + b * maxBlocks;
    const needed = Math.ceil((s.start + ids.length) / blockSize);
    for (let j = 0; j < needed; j++) h[row + j] = s.blockTable[j];
    h.fill(0, row + needed, row + maxBlocks);
    if (s.allLogits) for (let i = ids.length; i > 0; i--) h[layout.sample + sampled++] = t - i;
    else if (s.sample) h[layout.sample + sampled++] = t - 1;
  }
}

/**
 * Writes a decode step (one token per sequence, every one sampled) padded to a graph bucket of
 * `size` rows: real rows first, then padding rows — token 0 at position 0, every block-table entry
 * `scratch` (a block outside the engine's pool) — so that the padded rows write only there.
 */
export function packDecodeBucket(
  batch: readonly StepSequence[],
  size: number,
  layout: PackedLayout,
  maxBlocks: number,
  blockSize: number,
  scratch: number,
  h: Int32Array,
): void {
  const B = batch.length;
  if (B > size) throw new Error(`a decode batch of ${B} does not fit a bucket of ${size}`);
  h[layout.cu] = 0;
  for (let b = 0; b < size; b++) {
    const row = layout.table + b * maxBlocks;
    if (b < B) {
      const s = batch[b];
      h[layout.ids + b] = s.tokenIds[0];
      h[layout.past + b] = s.start;
      const needed = Math.ceil((s.start + 1) / blockSize);
      for (let j = 0; j < needed; j++) h[row + j] = s.blockTable[j];
      h.fill(scratch, row + needed, row + maxBlocks);
    } else {
      h[layout.ids + b] = 0;
      h[layout.past + b] = 0;
      h.fill(scratch, row, row + maxBlocks);
    }
    h[layout.cu + b + 1] = b + 1;
    h[layout.sample + b] = b;
  }
}
