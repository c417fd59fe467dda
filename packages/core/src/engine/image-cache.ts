/** One encoder run several requests wait on. */
interface Inflight {
  promise: Promise<Float32Array>;
  /** Aborts the run once every waiter has left. */
  controller: AbortController;
  /** Waiters with a signal still waiting. */
  waiters: number;
  /** A waiter without a signal joined: the run is never abandoned. */
  pinned: boolean;
}

/**
 * Image embeddings by content hash (LightLLM keeps such an MD5-keyed LRU): a hit skips the vision
 * encoder. Bounded by bytes; least recently used entries go first. Concurrent requests for the
 * same image share one encoder run; a waiter whose signal aborts leaves at once, and the run is
 * abandoned (its signal aborted) only when no waiter is left.
 */
export class ImageEmbeddingCache {
  private readonly entries = new Map<string, Float32Array>();
  private readonly inflight = new Map<string, Inflight>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(
    readonly capacityBytes: number,
    /** At most this many entries (LightLLM counts images); undefined: bytes alone bound it. */
    readonly maxEntries?: number,
  ) {}

  /**
   * The cached embeddings of `hash`, or those `compute` makes (once, however many ask at once).
   * `compute` gets a signal that aborts when every waiter has left; `signal` is this waiter's own.
   */
  async get(
    hash: string,
    compute: (signal: AbortSignal) => Promise<Float32Array>,
    signal?: AbortSignal,
  ): Promise<Float32Array> {
    signal?.throwIfAborted();
    const cached = this.entries.get(hash);
    if (cached) {
      this.hits++;
      this.entries.delete(hash);
      this.entries.set(hash, cached);
      return cached;
    }
    let run = this.inflight.get(hash);
    if (run) this.hits++;
    else {
      this.misses++;
      run = this.start(hash, compute);
    }
    return this.wait(hash, run, signal);
  }

  private start(hash: string, compute: (signal: AbortSignal) => Promise<Float32Array>): Inflight {
    const controller = new AbortController();
    const forget = () => {
      if (this.inflight.get(hash) === run) this.inflight.delete(hash);
    };
    const promise = (async () => compute(controller.signal))().then(
      (value) => {
        forget();
        if (!controller.signal.aborted) this.put(hash, value);
        return value;
      },
      (e) => {
        forget();
        throw e;
      },
    );
    // Waiters that left do not read the outcome; it is handled here so that it is never unhandled.
    promise.catch(() => {});
    const run: Inflight = { promise, controller, waiters: 0, pinned: false };
    this.inflight.set(hash, run);
    return run;
  }

  private wait(hash: string, run: Inflight, signal?: AbortSignal): Promise<Float32Array> {
    if (!signal) {
      run.pinned = true;
      return run.promise;
    }
    run.waiters++;
    return new Promise<Float32Array>((resolve, reject) => {
      const leave = () => {
        run.waiters--;
        if (run.waiters === 0 && !run.pinned) {
          // Nobody wants it any more: later requests for the image start afresh.
          if (this.inflight.get(hash) === run) this.inflight.delete(hash);
          run.controller.abort(signal.reason);
        }
        reject(signal.reason);
      };
      signal.addEventListener('abort', leave, { once: true });
      run.promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', leave));
    });
  }

  get sizeBytes(): number {
    return this.bytes;
  }

  get size(): number {
    return this.entries.size;
  }

  private put(hash: string, value: Float32Array): void {
    if (value.byteLength > this.capacityBytes || this.maxEntries === 0) return;
    this.entries.set(hash, value);
    this.bytes += value.byteLength;
    const maxEntries = this.maxEntries ?? Number.POSITIVE_INFINITY;
    for (const [key, v] of this.entries) {
      if (this.bytes <= this.capacityBytes && this.entries.size <= maxEntries) break;
      this.entries.delete(key);
      this.bytes -= v.byteLength;
    }
  }
}
