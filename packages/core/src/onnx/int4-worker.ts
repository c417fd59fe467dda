/**
 * A thread of `quantizeInt4Jobs`: takes jobs by index from the shared counter, reads each job's
 * tensors from the checkpoint, stacks and quantizes them (`quantizeInt4`) and writes the packed
 * weights and scales at the job's offsets in weights.bin; counts each one done.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import { readTensorF32 } from '../loader/safetensors.js';
import { type Int4Job, reportFailure, STATE, STATE_BYTES } from './int4-jobs.js';
import { quantizeInt4 } from './quantize.js';

const { jobs, weightsPath, shared } = workerData as {
  jobs: Int4Job[];
  weightsPath: string;
  shared: SharedArrayBuffer;
};
const state = new Int32Array(shared, 0, STATE_BYTES / 4);
Atomics.add(state, STATE.started, 1);
let fd: number | undefined;
try {
  fd = openSync(weightsPath, 'r+');
  for (let j = Atomics.add(state, STATE.next, 1); j < jobs.length; j = Atomics.add(state, STATE.next, 1)) {
    const { parts, N, K, offsetB, offsetScales } = jobs[j];
    const all = new Float32Array(N * K);
    let offset = 0;
    for (const entry of parts) {
      const part = readTensorF32(entry);
      all.set(part, offset);
      offset += part.length;
    }
    if (offset !== N * K) throw new Error(`${parts[0].name}: ${offset} values, expected ${N} × ${K}`);
    const { packed, scales } = quantizeInt4(all, N, K);
    writeSync(fd, packed, 0, packed.length, offsetB);
    writeSync(fd, new Uint8Array(scales.buffer), 0, scales.byteLength, offsetScales);
    Atomics.add(state, STATE.done, 1);
    Atomics.notify(state, STATE.done);
  }
} catch (e) {
  reportFailure(shared, (e as Error).message);
} finally {
  if (fd !== undefined) closeSync(fd);
}
