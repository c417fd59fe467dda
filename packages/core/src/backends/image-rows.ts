import type { StepSequence } from '../executor.js';

/**
 * The image embedding rows a step needs, packed: for each new token that stands at an image
 * placeholder, its row of the image's embeddings; `embedIndex[t]` is that row's index for packed
 * token t, or -1 for a text token. At least one (zero) row, so the tensor is never empty.
 */
export function gatherImageRows(
  batch: readonly StepSequence[],
  hidden: number,
  numTokens: number,
): { data: Float32Array; numRows: number; embedIndex: Int32Array } {
  const embedIndex = new Int32Array(numTokens).fill(-1);
  const rows: Float32Array[] = [];
  let t = 0;
  for (const s of batch) {
    for (const item of s.mm ?? []) {
      const from = Math.max(item.offset, s.start);
      const to = Math.min(item.offset + item.length, s.start + s.tokenIds.length);
      for (let pos = from; pos < to; pos++) {
        if (!item.embeddings) throw new Error(`image at position ${item.offset} has no embeddings`);
        embedIndex[t + pos - s.start] = rows.length;
        rows.push(item.embeddings.subarray((pos - item.offset) * hidden, (pos - item.offset + 1) * hidden));
      }
    }
    t += s.tokenIds.length;
  }
  const numRows = Math.max(1, rows.length);
  const data = new Float32Array(numRows * hidden);
  for (const [i, r] of rows.entries()) data.set(r, i * hidden);
  return { data, numRows, embedIndex };
}
