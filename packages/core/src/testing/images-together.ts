import type { Engine } from '../engine/engine.js';
import type { GenerateRequest, GenerateResult } from '../engine/request.js';

/**
 * Sends `requests` at once and, while they are prepared, keeps this thread busy for `holdMs`
 * between turns of the event loop — as long decoder steps keep a loaded server's thread busy.
 * Every image then advances one stage of its decoding (header, decode, resize) per turn, in step
 * with the others, and all of them reach the vision tower in the same turn: the case the tower
 * batcher exists for. Without the hold, on an idle machine, the tiny test towers finish each image
 * before the next one is decoded, and whether images meet at the tower is left to chance.
 */
export async function generateTogether(
  engine: Engine,
  requests: GenerateRequest[],
  holdMs = 100,
): Promise<GenerateResult[]> {
  const results = engine.generate(requests);
  let failed = false;
  results.catch(() => {
    failed = true;
  });
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + 30_000;
  while (!failed && engine.stats().numPreparing > 0 && Date.now() < deadline) {
    Atomics.wait(cell, 0, 0, holdMs);
    await new Promise((r) => setImmediate(r));
  }
  return results;
}
