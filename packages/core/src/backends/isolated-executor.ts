import { SwitchyardError } from '../errors.js';
import type { Executor, ExecutorHealth, KvPoolShape, StepSequence } from '../executor.js';
import { type ExecutorHost, type ExecutorIsolation, startExecutorHost } from './executor-host.js';
import type { ExecutorThreadSetup } from './executor-worker.js';

/** What the thread or process says once its executor is built. */
interface Ready {
  device: string;
  vocabSize: number;
  kvBytesPerToken: number;
  pool: KvPoolShape;
  greedy: boolean;
}

type WireError = { message: string; kind: string; param?: string };
type Reply = { id: number; out?: Float32Array | Int32Array; error?: WireError };
type FromWorker = Reply & { ready?: Ready; failed?: WireError };

const fromWire = (e: WireError) => new SwitchyardError(e.message, e.kind as never, e.param);

/** When an executor that keeps dying stops being restarted. */
export interface RestartPolicy {
  /** Restarts allowed within `windowMs`; one more death inside the window and it stays down (default 3). */
  maxRestarts: number;
  /** The window deaths are counted in, ms (default 300 000: five minutes). */
  windowMs: number;
}

export interface IsolatedExecutorOptions {
  /** 'thread' (default): a worker thread of this process; 'process': a child process of its own. */
  isolation?: ExecutorIsolation;
  restart?: Partial<RestartPolicy>;
}

/**
 * Any backend's executor on a worker thread or in a child process of its own. On a thread the
 * engine's `await run(batch)` leaves this thread free to answer HTTP, stream and take aborts while
 * the step runs; in a process a native crash (a segfault or abort in ONNX Runtime or a GPU
 * provider) kills only the child, as vLLM keeps its model runner in a process of its own.
 *
 * A step that fails rejects with the backend's message. A thread or process that dies rejects the
 * step in flight with an error naming the signal or exit code, then is started again with the same
 * setup and the same KV pool size (the pool it held is gone: `takeLostPool` tells the engine, which
 * fails the requests holding KV and forgets its prefixes). After more than `maxRestarts` deaths
 * within `windowMs` it stays down and every step rejects saying so (`health()` reports each
 * state). Mutates only its own table of steps in flight and its restart state.
 */
export class IsolatedExecutor implements Executor {
  device!: string;
  vocabSize!: number;
  kvBytesPerToken!: number;
  pool!: KvPoolShape;
  runGreedy?: (batch: readonly StepSequence[]) => Promise<Int32Array>;
  private host!: ExecutorHost;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  /** Set while a new thread or process is being started after a death. */
  private starting?: Promise<void>;
  private restartReason?: string;
  private numRestarts = 0;
  /** Times of the deaths within the policy's window. */
  private deaths: number[] = [];
  /** Set once it has died too often: it stays down. */
  private down?: SwitchyardError;
  /** Why the KV pool was lost, until `takeLostPool` hands it over. */
  private lost?: SwitchyardError;
  private closing = false;
  /** Hosts given up on (a restart that came back wrong): their end is not another death. */
  private readonly retired = new WeakSet<ExecutorHost>();
  private readonly policy: RestartPolicy;

  private constructor(
    private setup: ExecutorThreadSetup,
    readonly isolation: ExecutorIsolation,
    restart: Partial<RestartPolicy> = {},
  ) {
    this.policy = { maxRestarts: restart.maxRestarts ?? 3, windowMs: restart.windowMs ?? 300_000 };
  }

  /** Starts the thread or process and builds `device`'s executor there; rejects with the backend's error. */
  static async create(
    setup: ExecutorThreadSetup,
    options: IsolatedExecutorOptions = {},
  ): Promise<IsolatedExecutor> {
    const ex = new IsolatedExecutor(setup, options.isolation ?? 'thread', options.restart);
    const r = await ex.start();
    ({ device: ex.device, vocabSize: ex.vocabSize, kvBytesPerToken: ex.kvBytesPerToken, pool: ex.pool } = r);
    if (r.greedy) ex.runGreedy = (batch) => ex.call('runGreedy', batch) as Promise<Int32Array>;
    // A restart makes the pool the KV manager was sized for, whatever memory is free then.
    const kvCacheTokens = r.pool.numBlocks * r.pool.blockSize;
    ex.setup = { ...setup, options: { ...setup.options, kvCacheTokens, memoryUtilization: undefined } };
    return ex;
  }

  /** The child's process id ('process'), or this process's own ('thread'). */
  get pid(): number {
    return this.host.pid;
  }

  run(batch: readonly StepSequence[]): Promise<Float32Array> {
    return this.call('run', batch) as Promise<Float32Array>;
  }

  health(): ExecutorHealth {
    const { numRestarts } = this;
    if (this.down) return { status: 'failed', reason: this.down.message, numRestarts };
    if (this.starting) return { status: 'restarting', reason: this.restartReason, numRestarts };
    return { status: 'ok', numRestarts };
  }

  takeLostPool(): Error | undefined {
    const lost = this.lost;
    this.lost = undefined;
    return lost;
  }

  async dispose(): Promise<void> {
    this.closing = true;
    while (this.starting) await this.starting;
    if (!this.down) {
      const timeout = new Promise((r) => setTimeout(r, 5000).unref());
      await Promise.race([this.call('dispose').catch(() => {}), timeout]);
    }
    await this.host.stop();
  }

  private get noun(): string {
    return this.isolation === 'process' ? 'executor process' : 'executor thread';
  }

  /** Starts a thread or process with the setup; resolves once its executor is built. */
  private start(): Promise<Ready> {
    return new Promise((resolve, reject) => {
      let booting = true;
      const host = startExecutorHost(
        this.isolation,
        (message) => {
          const m = message as FromWorker;
          if (!booting) return this.reply(m);
          booting = false;
          if (m.ready) return resolve(m.ready);
          reject(fromWire(m.failed!));
          void host.stop();
        },
        (why) => {
          if (booting) {
            booting = false;
            reject(new SwitchyardError(`the ${this.noun} failed to start: ${why}`, 'model_load'));
          } else if (host === this.host && !this.retired.has(host)) this.died(why);
        },
      );
      this.host = host;
      host.post({ setup: this.setup });
    });
  }

  private reply(m: Reply): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.error) p.reject(fromWire(m.error));
    else p.resolve(m);
  }

  /** The thread or process ended by itself: fail what was in flight, then restart it or stay down. */
  private died(why: string): void {
    const what = `the ${this.noun} died (${why}) ${this.pending.size > 0 ? 'during a step' : 'between steps'}`;
    let error: SwitchyardError;
    if (this.closing) {
      error = new SwitchyardError(`${what} while the engine was closing`, 'internal');
    } else {
      const now = Date.now();
      this.deaths = this.deaths.filter((t) => now - t < this.policy.windowMs).concat(now);
      if (this.deaths.length > this.policy.maxRestarts) {
        this.down = new SwitchyardError(
          `${what}: ${this.deaths.length} deaths within ${this.policy.windowMs / 1000} s, so the executor keeps crashing and is not restarted again; every request fails until the server is restarted. Check the server's log for the crash (native library, GPU memory or driver errors); try another --device, a smaller --kv-cache-tokens or --max-num-batched-tokens`,
          'internal',
        );
        error = this.down;
      } else {
        error = new SwitchyardError(
          `${what}; its requests failed and the executor was restarted`,
          'internal',
        );
        this.restart(why);
      }
      this.lost = error;
    }
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }

  private restart(why: string): void {
    this.numRestarts++;
    this.restartReason = `the ${this.noun} died (${why}) and is being restarted`;
    this.starting = this.start().then(
      (r) => {
        this.starting = undefined;
        if (r.pool.numBlocks !== this.pool.numBlocks || r.pool.blockSize !== this.pool.blockSize) {
          const host = this.host;
          this.retired.add(host);
          this.died(`its restart made a KV pool of ${r.pool.numBlocks} blocks, not ${this.pool.numBlocks}`);
          void host.stop();
        }
      },
      (e: Error) => {
        this.starting = undefined;
        this.died(`its restart failed: ${e.message}`);
      },
    );
  }

  private async call(kind: 'run' | 'runGreedy' | 'dispose', batch?: readonly StepSequence[]) {
    while (this.starting) await this.starting;
    if (this.down) throw this.down;
    const id = this.nextId++;
    const reply = await new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.host.post({ id, kind, batch });
    });
    return reply.out!;
  }
}
