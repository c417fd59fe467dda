import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { reportLoadProgress } from '../loader/progress.js';
import type { TensorEntry } from '../loader/safetensors.js';

/** One MatMulNBits weight to make: `parts` stacked by rows (N × K), written at two file offsets. */
export interface Int4Job {
  parts: TensorEntry[];
  N: number;
  K: number;
  offsetB: number;
  offsetScales: number;
}

/** The worker's file next to this one: compiled, or under vitest the build's copy of it. */
function workerUrl(): URL {
  const here = new URL(import.meta.url);
  if (here.pathname.endsWith('.ts')) return new URL('../../dist/onnx/int4-worker.js', here);
  return new URL('./int4-worker.js', here);
}

/** Shared state of a run: [next job, jobs done, failed, message length, workers started]. */
export const STATE = { next: 0, done: 1, failed: 2, messageLength: 3, started: 4 } as const;
export const STATE_BYTES = 32;
const MESSAGE_BYTES = 2048;
/** A run fails when no job finishes for this long (a worker killed mid-job says nothing). */
const STALL_MS = 300_000;

/**
 * Quantizes the jobs into `weightsPath` on worker threads (up to 8, each reading its tensors from
 * the checkpoint itself and writing at its offsets) and returns when all are written. The graph
 * builder is synchronous, so this thread waits on shared memory (`Atomics.wait`) rather than on
 * events; a worker's error or a stall becomes a thrown Error with the worker's message.
 */
export function quantizeInt4Jobs(jobs: Int4Job[], weightsPath: string, maxWorkers = 8): void {
  if (jobs.length === 0) return;
  const shared = new SharedArrayBuffer(STATE_BYTES + MESSAGE_BYTES);
  const state = new Int32Array(shared, 0, STATE_BYTES / 4);
  const count = Math.max(1, Math.min(jobs.length, availableParallelism(), maxWorkers));
  const stage = `quantizing int4 weights on ${count} thread${count > 1 ? 's' : ''}`;
  const workers = Array.from(
    { length: count },
    () => new Worker(workerUrl(), { workerData: { jobs, weightsPath, shared } }),
  );
  try {
    let done = 0;
    let since = Date.now();
    reportLoadProgress(stage, 0, jobs.length);
    while (done < jobs.length) {
      if (Atomics.load(state, STATE.failed)) {
        const length = Atomics.load(state, STATE.messageLength);
        const text = new TextDecoder().decode(new Uint8Array(shared, STATE_BYTES, length).slice());
        throw new Error(`int4 quantization failed: ${text}`);
      }
      if (Date.now() - since > STALL_MS) {
        const started = Atomics.load(state, STATE.started);
        throw new Error(
          `int4 quantization stalled: ${done} of ${jobs.length} weights in ${STALL_MS / 1000} s, ${started} of ${count} threads started`,
        );
      }
      Atomics.wait(state, STATE.done, done, 1000);
      const now = Atomics.load(state, STATE.done);
      if (now !== done) {
        done = now;
        since = Date.now();
        reportLoadProgress(stage, done, jobs.length);
      }
    }
  } finally {
    Atomics.store(state, STATE.next, jobs.length); // idle workers stop taking jobs
    for (const w of workers) void w.terminate();
  }
}

/** Writes an error message into the shared state (the worker's side of `quantizeInt4Jobs`). */
export function reportFailure(shared: SharedArrayBuffer, message: string): void {
  const state = new Int32Array(shared, 0, STATE_BYTES / 4);
  const bytes = new TextEncoder().encode(message).slice(0, MESSAGE_BYTES);
  new Uint8Array(shared, STATE_BYTES, MESSAGE_BYTES).set(bytes);
  Atomics.store(state, STATE.messageLength, bytes.length);
  Atomics.store(state, STATE.failed, 1);
  Atomics.notify(state, STATE.done);
}
