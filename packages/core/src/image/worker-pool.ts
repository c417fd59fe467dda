import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { SwitchyardError } from '../errors.js';
import type { ProcessedImage } from '../model.js';

/** Where the pool's threads find the model: its checkpoint and the modules that register it. */
export interface ImageWorkerOptions {
  /** The checkpoint folder. */
  model: string;
  /**
   * URLs (or specifiers) of modules exporting `register(container)` or `registerBuiltins(container)`
   * that add the checkpoint's architecture to a container, as the engine's container has it.
   */
  modules: string[];
  /** Threads (default: the cores, at most 8). */
  threads?: number;
}

interface Job {
  id: number;
  bytes: Uint8Array;
  maxPixels: number;
  resolve: (p: ProcessedImage) => void;
  reject: (e: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

interface Slot {
  worker: Worker;
  job?: Job;
}

/** The worker's file next to this one: compiled, or under vitest the build's copy of it. */
function workerUrl(): URL {
  const here = new URL(import.meta.url);
  if (here.pathname.endsWith('.ts')) return new URL('../../dist/image/image-worker.js', here);
  return new URL('./image-worker.js', here);
}

/**
 * Decodes and preprocesses images on worker threads, so that neither libvips' output conversion nor
 * the processors' resampling runs on the thread that answers HTTP and steps the engine. Jobs wait in
 * a FIFO queue (bounded by the caller's pixel budget); an aborted job leaves the queue at once, or,
 * when it is already running, rejects as soon as its thread is done (its result is dropped), so a
 * caller's budget covers every pixel still held. Mutates its queue and slots only.
 */
export class ImageWorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 0;
  private closed = false;
  /** Threads, started on the first image (a server that never sees one never pays for them). */
  readonly size: number;

  constructor(private readonly options: ImageWorkerOptions) {
    this.size = options.threads ?? Math.max(1, Math.min(8, availableParallelism()));
  }

  /** Decodes `bytes` (at most `maxPixels`) and runs the model's processor on a worker thread. */
  run(bytes: Uint8Array, maxPixels: number, signal?: AbortSignal): Promise<ProcessedImage> {
    if (this.closed) return Promise.reject(new SwitchyardError('the engine is closed', 'capacity'));
    signal?.throwIfAborted();
    return new Promise<ProcessedImage>((resolve, reject) => {
      const job: Job = { id: this.nextId++, bytes, maxPixels, resolve, reject, signal };
      if (signal) {
        job.onAbort = () => {
          const i = this.queue.indexOf(job);
          if (i < 0) return; // running: it rejects when the thread is done, so its pixels stay counted till then
          this.queue.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.queue.push(job);
      while (this.slots.length < this.size) this.slots.push(this.spawn());
      this.pump();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0))
      job.reject(new SwitchyardError('the engine is closed', 'capacity'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private spawn(): Slot {
    const worker = new Worker(workerUrl(), {
      workerData: { model: this.options.model, modules: this.options.modules },
    });
    worker.unref();
    const slot: Slot = { worker };
    worker.on('message', (msg: { id: number; processed?: ProcessedImage; error?: WorkerError }) => {
      const job = slot.job;
      slot.job = undefined;
      if (job && job.id === msg.id) this.settle(job, msg);
      this.pump();
    });
    worker.on('error', (e) => {
      const job = slot.job;
      slot.job = undefined;
      if (job)
        this.settle(job, { error: { message: `image worker failed: ${e.message}`, kind: 'internal' } });
      const i = this.slots.indexOf(slot);
      if (i >= 0 && !this.closed) this.slots[i] = this.spawn();
      this.pump();
    });
    return slot;
  }

  private settle(job: Job, msg: { processed?: ProcessedImage; error?: WorkerError }): void {
    if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort);
    if (job.signal?.aborted) job.reject(job.signal.reason);
    else if (msg.processed) job.resolve(msg.processed);
    else job.reject(new SwitchyardError(msg.error!.message, msg.error!.kind, msg.error!.param));
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.job) continue;
      const job = this.queue.shift()!;
      slot.job = job;
      slot.worker.postMessage({ id: job.id, bytes: job.bytes, maxPixels: job.maxPixels });
    }
  }
}

interface WorkerError {
  message: string;
  kind: SwitchyardError['kind'];
  param?: string;
}
