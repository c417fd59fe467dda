// What the GPU parity scripts compare for one transformers reference case.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Steps of a reference case before its first margin under 5e-2 (those are held to its ids). */
export function sureSteps(c) {
  const thin = c.margins.findIndex((m) => m < 5e-2);
  return thin === -1 ? c.generated_ids.length : thin;
}

/** Whether `ids` equal the reference's over the steps it is sure of, and how many those are. */
export function idsAgree(ids, c) {
  const sure = sureSteps(c);
  return {
    ids_equal_where_margin_over_0_05: ids.slice(0, sure).every((t, k) => t === c.generated_ids[k]),
    steps_compared: sure,
  };
}

/**
 * One chat case through an executor alone: step-0 logits against the reference's, then greedy
 * decode one token at a time (logits read back) in the case's own `blocks`.
 */
export async function executorCase(ex, dir, c, blocks) {
  const b = readFileSync(join(dir, c.logits0_file));
  const want = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  let logits = await ex.run([{ tokenIds: c.prompt_ids, start: 0, blockTable: blocks, sample: true }]);
  let maxDiff = 0;
  for (let v = 0; v < want.length; v++) maxDiff = Math.max(maxDiff, Math.abs(want[v] - logits[v]));
  const ids = [];
  for (let s = 0; s < c.generated_ids.length; s++) {
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
    ids.push(best);
    logits = await ex.run([
      { tokenIds: [best], start: c.prompt_ids.length + s, blockTable: blocks, sample: true },
    ]);
  }
  return {
    max_abs_logit_diff: maxDiff,
    ...idsAgree(ids, c),
    first_divergence: ids.findIndex((t, k) => t !== c.generated_ids[k]),
  };
}
