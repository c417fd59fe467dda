import { Worker } from 'node:worker_threads';
import { SwitchyardError } from '../errors.js';

/** Texts at least this long are tokenized on the thread (shorter ones take well under a millisecond). */
export const OFF_THREAD_CHARS = 8192;

/** The worker's file next to this one: compiled, or under vitest the build's copy of it. */
function workerUrl(): URL {
  const here = new URL(import.meta.url);
  if (here.pathname.endsWith('.ts')) return new URL('../../dist/loader/tokenizer-worker.js', here);
  return new URL('./tokenizer-worker.js', here);
}

interface Pending {
  resolve: (ids: number[]) => void;
  reject: (e: Error) => void;
}

/**
 * A checkpoint's tokenizer on a thread of its own, so that a long prompt (tens of thousands of
 * characters take hundreds of ms) does not stop the thread that answers HTTP and steps the engine.
 * Started on first use; texts are encoded in arrival order. Mutates its pending map only.
 */
export class TokenizerThread {
  private worker?: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private closed = false;

  constructor(private readonly model: string) {}

  encode(text: string, addSpecial: boolean): Promise<number[]> {
    if (this.closed) return Promise.reject(new SwitchyardError('the engine is closed', 'capacity'));
    const worker = this.start();
    const id = this.nextId++;
    return new Promise<number[]>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, text, addSpecial });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.failAll(new SwitchyardError('the engine is closed', 'capacity'));
    await this.worker?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(workerUrl(), { workerData: { model: this.model } });
    worker.unref();
    worker.on('message', (msg: { id: number; ids?: Int32Array; error?: string }) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ids) p.resolve(Array.from(msg.ids));
      else p.reject(new SwitchyardError(`tokenizing failed: ${msg.error}`, 'internal'));
    });
    worker.on('error', (e) => {
      this.worker = undefined;
      this.failAll(new SwitchyardError(`the tokenizer thread failed: ${e.message}`, 'internal'));
    });
    this.worker = worker;
    return worker;
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}
