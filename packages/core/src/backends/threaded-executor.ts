import { Worker } from 'node:worker_threads';
import { SwitchyardError } from '../errors.js';
import type { Executor, KvPoolShape, StepSequence } from '../executor.js';
import type { ExecutorThreadSetup } from './executor-worker.js';

/** The worker's file next to this one: compiled, or under vitest the build's copy of it. */
function workerUrl(): URL {
  const here = new URL(import.meta.url);
  if (here.pathname.endsWith('.ts')) return new URL('../../dist/backends/executor-worker.js', here);
  return new URL('./executor-worker.js', here);
}

/** What the thread says once its executor is built. */
interface Ready {
  device: string;
  vocabSize: number;
  kvBytesPerToken: number;
  pool: KvPoolShape;
  greedy: boolean;
}

type Reply = {
  id: number;
  out?: Float32Array | Int32Array;
  error?: { message: string; kind: string; param?: string };
};

/**
 * Any backend's executor on a thread of its own: the engine's `await run(batch)` then leaves this
 * thread free to answer HTTP, stream tokens and take aborts while the step runs (vLLM keeps its
 * model runner out of the API server's process for the same reason). A step that fails rejects
 * with the backend's message; a thread that dies fails the step in flight and every later one with
 * a clear error, and the process goes on. Mutates only its own table of steps in flight.
 */
export class ThreadedExecutor implements Executor {
  readonly runGreedy?: (batch: readonly StepSequence[]) => Promise<Int32Array>;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private dead?: Error;

  private constructor(
    private readonly worker: Worker,
    readonly device: string,
    readonly vocabSize: number,
    readonly kvBytesPerToken: number,
    readonly pool: KvPoolShape,
    greedy: boolean,
  ) {
    if (greedy) this.runGreedy = (batch) => this.call('runGreedy', batch) as Promise<Int32Array>;
    worker.on('message', (reply: Reply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (reply.error)
        p.reject(new SwitchyardError(reply.error.message, reply.error.kind as never, reply.error.param));
      else p.resolve(reply);
    });
    const die = (why: string) => {
      this.dead ??= new SwitchyardError(`the executor thread stopped: ${why}`, 'internal');
      for (const p of this.pending.values()) p.reject(this.dead);
      this.pending.clear();
    };
    worker.on('error', (e) => die(e.message));
    worker.on('exit', (code) => die(`it exited with code ${code}`));
  }

  /** Starts the thread and builds `device`'s executor there; rejects with the backend's error. */
  static create(setup: ExecutorThreadSetup): Promise<ThreadedExecutor> {
    const worker = new Worker(workerUrl(), { workerData: setup });
    return new Promise((resolve, reject) => {
      const onError = (e: Error) =>
        reject(new SwitchyardError(`the executor thread failed to start: ${e.message}`, 'model_load'));
      worker.once('error', onError);
      worker.once(
        'message',
        (m: { ready?: Omit<ThreadedExecutor, 'run'> & { greedy: boolean }; failed?: Reply['error'] }) => {
          worker.off('error', onError);
          if (m.failed) {
            void worker.terminate();
            reject(new SwitchyardError(m.failed.message, m.failed.kind as never, m.failed.param));
            return;
          }
          const r = m.ready!;
          resolve(new ThreadedExecutor(worker, r.device, r.vocabSize, r.kvBytesPerToken, r.pool, r.greedy));
        },
      );
    });
  }

  run(batch: readonly StepSequence[]): Promise<Float32Array> {
    return this.call('run', batch) as Promise<Float32Array>;
  }

  async dispose(): Promise<void> {
    if (!this.dead) await this.call('dispose').catch(() => {});
    await this.worker.terminate();
  }

  private async call(kind: 'run' | 'runGreedy' | 'dispose', batch?: readonly StepSequence[]) {
    if (this.dead) throw this.dead;
    const id = this.nextId++;
    const reply = await new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, kind, batch });
    });
    return reply.out!;
  }
}
