import { SwitchyardError } from '../errors.js';
import type { VisionRunner } from '../vision-runner.js';

/** Default of `visionBatchSize`: tiles one tower run takes at most (measured: docs/decisions/0014). */
export const DEFAULT_VISION_BATCH_SIZE = 16;

/** What the tower did, counted by `BatchingVisionRunner` (runs, and the images and tiles they took). */
export interface VisionBatchStats {
  /** Runs of the wrapped tower. */
  runs: number;
  /** Images (encode calls) those runs served; a call retried alone after a failed batch counts twice. */
  images: number;
  /** Rows (images or tiles) those runs took. */
  tiles: number;
  /** The most tiles one run took. */
  maxBatchTiles: number;
  /** Batched runs that failed and were retried member by member. */
  fallbacks: number;
}

type Encoded = { data: Float32Array; shape: number[] };

/** One caller's images waiting in the queue. */
interface Pending {
  pixels: Float32Array;
  shape: number[];
  /** Leading dims flattened: how many rows (images or tiles) the call brings. */
  rows: number;
  /** [C, H, W] as a string: only calls of one row shape share a run. */
  key: string;
  signal?: AbortSignal;
  onAbort?: () => void;
  settled: boolean;
  resolve(out: Encoded): void;
  reject(e: unknown): void;
}

/**
 * Encodes the images of concurrent requests in one tower run (LightLLM's visual_infer_batch_size;
 * vLLM batches its encoder inputs the same way). Wraps any backend's `VisionRunner`.
 *
 * While the tower is idle a call starts at once (in the event loop's next check phase, where
 * onnxruntime-node would start its run anyway, so that calls made together and images finished
 * together share the run; never on a timer). Calls arriving while it runs are queued; when it is
 * free, queued calls of the same row shape are taken in arrival order up to `maxBatchTiles` rows
 * (tiles count as rows; a single larger call still runs, alone), concatenated along N, run once,
 * and the output is split back per caller. A batch that fails is retried member by member, so only
 * a bad call fails. An aborted caller leaves the queue (or, once its run is under way, its rows are
 * dropped) without touching the others. `maxBatchTiles` 0 or 1: no queue, each call runs on its own
 * at once (counted all the same). Mutates: `stats`, the queue.
 */
export class BatchingVisionRunner implements VisionRunner {
  readonly stats: VisionBatchStats = { runs: 0, images: 0, tiles: 0, maxBatchTiles: 0, fallbacks: 0 };
  private readonly queue: Pending[] = [];
  /** The drain loop now running, if any: at most one tower run at a time. */
  private draining?: Promise<void>;

  constructor(
    readonly inner: VisionRunner,
    readonly maxBatchTiles = DEFAULT_VISION_BATCH_SIZE,
  ) {
    if (!Number.isInteger(maxBatchTiles) || maxBatchTiles < 0) {
      throw new SwitchyardError(
        `visionBatchSize must be an integer ≥ 0 (0 or 1: no batching), got ${maxBatchTiles}`,
        'invalid_request',
        'visionBatchSize',
      );
    }
  }

  /** Whether calls are queued and batched (`maxBatchTiles` > 1). */
  get batching(): boolean {
    return this.maxBatchTiles > 1;
  }

  /** Calls waiting for the tower now. */
  get numQueued(): number {
    return this.queue.length;
  }

  async encode(pixels: Float32Array, shape: number[], options?: { signal?: AbortSignal }): Promise<Encoded> {
    const signal = options?.signal;
    signal?.throwIfAborted();
    const rows = rowsOf(pixels, shape);
    if (rows === 0) return this.inner.encode(pixels, shape, options);
    if (!this.batching) return this.tower(pixels, shape, rows, 1, signal);
    return new Promise<Encoded>((resolve, reject) => {
      const p: Pending = {
        pixels,
        shape,
        rows,
        key: shape.slice(-3).join('x'),
        signal,
        settled: false,
        resolve,
        reject,
      };
      if (signal) {
        p.onAbort = () => this.abandon(p, signal.reason);
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.queue.push(p);
      this.draining ??= this.drain();
    });
  }

  /** Refuses what is still queued, waits for the run under way, then disposes the wrapped runner. */
  async dispose(): Promise<void> {
    for (const p of this.queue.splice(0)) {
      this.settle(p, new SwitchyardError('the vision tower was closed before it ran', 'capacity'));
    }
    await this.draining;
    await this.inner.dispose();
  }

  /**
   * Runs batches until the queue is empty. Before each it yields one turn of the event loop
   * (setImmediate, no timer): onnxruntime-node runs a session on this thread (deferred by a
   * setImmediate of its own), so images whose preprocessing finished meanwhile — during the last
   * run, or a decoder step — only reach the queue once their I/O callbacks have run.
   */
  private async drain(): Promise<void> {
    try {
      for (;;) {
        await new Promise<void>((r) => setImmediate(r));
        if (this.queue.length === 0) return;
        await this.runBatch(this.take());
      }
    } finally {
      this.draining = undefined;
    }
  }

  /** The oldest queued call and the later ones of its row shape that fit beside it, in order. */
  private take(): Pending[] {
    const first = this.queue.shift()!;
    const batch = [first];
    let tiles = first.rows;
    for (let i = 0; i < this.queue.length && tiles < this.maxBatchTiles; ) {
      const p = this.queue[i];
      if (p.key !== first.key) {
        i++;
        continue;
      }
      if (tiles + p.rows > this.maxBatchTiles) break;
      batch.push(p);
      tiles += p.rows;
      this.queue.splice(i, 1);
    }
    return batch;
  }

  /** One tower run for `batch`; each member gets its rows, or its own error. Never throws. */
  private async runBatch(batch: Pending[]): Promise<void> {
    if (batch.length === 1) return this.runAlone(batch[0]);
    const rowSize = batch[0].shape.slice(-3).reduce((a, b) => a * b, 1);
    const tiles = batch.reduce((n, p) => n + p.rows, 0);
    const pixels = new Float32Array(tiles * rowSize);
    let at = 0;
    for (const p of batch) {
      pixels.set(p.pixels, at);
      at += p.pixels.length;
    }
    let parts: Encoded[];
    try {
      const out = await this.tower(pixels, [tiles, ...batch[0].shape.slice(-3)], tiles, batch.length);
      parts = splitRows(
        out,
        batch.map((p) => p.rows),
      );
    } catch {
      // Which member broke the run is unknown: run each alone, so only that one gets the error.
      this.stats.fallbacks++;
      for (const p of batch) await this.runAlone(p);
      return;
    }
    for (const [i, p] of batch.entries()) this.settle(p, parts[i]);
  }

  private async runAlone(p: Pending): Promise<void> {
    if (p.settled) return;
    try {
      this.settle(p, await this.tower(p.pixels, p.shape, p.rows, 1));
    } catch (e) {
      this.settle(p, e);
    }
  }

  private tower(
    pixels: Float32Array,
    shape: number[],
    tiles: number,
    images: number,
    signal?: AbortSignal,
  ): Promise<Encoded> {
    const s = this.stats;
    s.runs++;
    s.images += images;
    s.tiles += tiles;
    s.maxBatchTiles = Math.max(s.maxBatchTiles, tiles);
    return this.inner.encode(pixels, shape, signal ? { signal } : undefined);
  }

  /** An aborted caller: out of the queue if still there; its promise rejects now either way. */
  private abandon(p: Pending, reason: unknown): void {
    const i = this.queue.indexOf(p);
    if (i >= 0) this.queue.splice(i, 1);
    this.settle(p, reason);
  }

  private settle(p: Pending, outcome: Encoded | unknown): void {
    if (p.settled) return;
    p.settled = true;
    if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort);
    if (isEncoded(outcome)) p.resolve(outcome);
    else p.reject(outcome);
  }
}

function isEncoded(x: unknown): x is Encoded {
  return typeof x === 'object' && x !== null && (x as Encoded).data instanceof Float32Array;
}

/** Rows of a call (its leading dims multiplied), after checking the shape against the data. */
function rowsOf(pixels: Float32Array, shape: number[]): number {
  if (
    !Array.isArray(shape) ||
    shape.length < 4 ||
    !shape.every((d) => Number.isInteger(d) && d >= 0) ||
    !(pixels instanceof Float32Array)
  ) {
    throw new SwitchyardError(
      `pixel values must be a Float32Array of shape [N, C, H, W] (more leading dims allowed), got shape [${String(shape)}]`,
      'invalid_request',
      'image',
    );
  }
  const size = shape.reduce((a, b) => a * b, 1);
  if (pixels.length !== size) {
    throw new SwitchyardError(
      `pixel values hold ${pixels.length} numbers but shape [${shape.join(', ')}] needs ${size}`,
      'invalid_request',
      'image',
    );
  }
  return shape.slice(0, -3).reduce((a, b) => a * b, 1);
}

/** A batched run's output split back into each caller's rows (copies: a caller keeps only its own). */
function splitRows(out: Encoded, rows: number[]): Encoded[] {
  const total = rows.reduce((a, b) => a + b, 0);
  if (out.shape[0] !== total || out.data.length % total !== 0) {
    throw new SwitchyardError(
      `the vision tower returned shape [${out.shape.join(', ')}] for ${total} rows`,
      'internal',
    );
  }
  const per = out.data.length / total;
  let at = 0;
  return rows.map((n) => {
    const part = { data: out.data.slice(at * per, (at + n) * per), shape: [n, ...out.shape.slice(1)] };
    at += n;
    return part;
  });
}
