import { describe, expect, it } from 'vitest';
import { SwitchyardError } from '../errors.js';
import type { VisionRunner } from '../vision-runner.js';
import { BatchingVisionRunner } from './vision-batcher.js';

/**
 * The queueing, splitting and failure rules, on a small tower written out here: each [C, H, W] row
 * becomes 2 tokens × 3 features (sum, max, first value, and their negatives). It refuses rows of
 * another size and any run that holds a NaN, and each run waits until the test releases it, so
 * the test decides what arrives while the tower is busy. The real towers are checked against
 * unbatched encoding in models-llava and models-internvl (`visionBatchParity`).
 */
class GatedTower implements VisionRunner {
  /** N of each run, in order. */
  readonly runs: number[] = [];
  inFlight = 0;
  maxInFlight = 0;
  private gates: (() => void)[] = [];
  disposed = false;

  constructor(
    private readonly row = [3, 2, 2],
    private readonly gated = true,
  ) {}

  async encode(pixels: Float32Array, shape: number[]) {
    const tail = shape.slice(-3);
    if (tail.join() !== this.row.join())
      throw new SwitchyardError(`shape [${shape}] does not fit [N, ${this.row}]`, 'invalid_request');
    const n = shape.slice(0, -3).reduce((a, b) => a * b, 1);
    this.runs.push(n);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    if (this.gated) await new Promise<void>((r) => this.gates.push(r));
    this.inFlight--;
    if (pixels.some(Number.isNaN)) throw new Error('NaN in the run');
    const size = this.row.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n * 6);
    for (let i = 0; i < n; i++) {
      const r = pixels.subarray(i * size, (i + 1) * size);
      const f = [r.reduce((a, b) => a + b, 0), Math.max(...r), r[0]];
      data.set([...f, ...f.map((v) => -v)], i * 6);
    }
    return { data, shape: [n, 2, 3] };
  }

  /** Lets the oldest waiting run finish. */
  release(): void {
    this.gates.shift()?.();
  }

  async dispose() {
    this.disposed = true;
  }
}

const ROW = 12;
/** `rows` rows of seeded values, with their shape ([rows, 3, 2, 2], or `lead` dims first). */
const image = (seed: number, rows = 1, lead: number[] = [rows]) => ({
  pixels: Float32Array.from({ length: rows * ROW }, (_, i) => Math.sin(seed * 31 + i)),
  shape: [...lead, 3, 2, 2],
});
/** A few turns of the event loop: what was released has run and the next batch has started. */
const settle = async () => {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
};
/** What the tower gives for an image encoded alone. */
const solo = async (img: ReturnType<typeof image>) =>
  new GatedTower(undefined, false).encode(img.pixels, img.shape);

describe('BatchingVisionRunner', () => {
  it('runs a lone call at once, with no wait on a timer', async () => {
    const tower = new GatedTower();
    const b = new BatchingVisionRunner(tower, 16);
    const out = b.encode(image(1).pixels, image(1).shape);
    await settle();
    expect(tower.runs).toEqual([1]);
    tower.release();
    expect(await out).toEqual(await solo(image(1)));
    expect(b.stats).toEqual({ runs: 1, images: 1, tiles: 1, maxBatchTiles: 1, fallbacks: 0 });
  });

  it('encodes the calls that arrive while the tower runs in one next run, split back in order', async () => {
    const tower = new GatedTower();
    const b = new BatchingVisionRunner(tower, 16);
    const imgs = [image(1), image(2), image(3, 3), image(4, 2, [1, 2])];
    const outs = imgs.slice(0, 1).map((m) => b.encode(m.pixels, m.shape));
    await settle();
    outs.push(...imgs.slice(1).map((m) => b.encode(m.pixels, m.shape)));
    await settle();
    expect(tower.runs).toEqual([1]);
    expect(b.numQueued).toBe(3);
    tower.release();
    await settle();
    expect(tower.runs).toEqual([1, 6]);
    tower.release();
    const got = await Promise.all(outs);
    for (const [i, m] of imgs.entries()) expect(got[i]).toEqual(await solo(m));
    expect(got[3].shape).toEqual([2, 2, 3]);
    expect(b.stats).toMatchObject({ runs: 2, images: 4, tiles: 7, maxBatchTiles: 6 });
  });

  it('calls made in one synchronous turn share the first run', async () => {
    const tower = new GatedTower(undefined, false);
    const b = new BatchingVisionRunner(tower, 16);
    const imgs = [1, 2, 3].map((s) => image(s));
    const got = await Promise.all(imgs.map((m) => b.encode(m.pixels, m.shape)));
    expect(tower.runs).toEqual([3]);
    for (const [i, m] of imgs.entries()) expect(got[i]).toEqual(await solo(m));
  });

  it('takes at most visionBatchSize tiles a run, in arrival order; a larger call runs alone', async () => {
    const tower = new GatedTower();
    const b = new BatchingVisionRunner(tower, 4);
    const first = b.encode(image(0).pixels, image(0).shape);
    await settle();
    const rest = [image(1, 2), image(2, 2), image(3, 6), image(4, 1), image(5, 2)].map((m) =>
      b.encode(m.pixels, m.shape),
    );
    for (let i = 0; i < 5; i++) {
      tower.release();
      await settle();
    }
    await Promise.all([first, ...rest]);
    expect(tower.runs).toEqual([1, 4, 6, 3]);
  });

  it('a call whose shape does not fit the tower gets its own error; the others their features', async () => {
    const tower = new GatedTower(undefined, false);
    const b = new BatchingVisionRunner(tower, 16);
    const bad = { pixels: new Float32Array(2 * 3 * 4 * 4), shape: [2, 3, 4, 4] };
    const good = [image(1), image(2)];
    const [r0, rBad, r1] = await Promise.allSettled([
      b.encode(good[0].pixels, good[0].shape),
      b.encode(bad.pixels, bad.shape),
      b.encode(good[1].pixels, good[1].shape),
    ]);
    expect(rBad).toMatchObject({
      status: 'rejected',
      reason: { message: 'shape [2,3,4,4] does not fit [N, 3,2,2]' },
    });
    expect(r0).toEqual({ status: 'fulfilled', value: await solo(good[0]) });
    expect(r1).toEqual({ status: 'fulfilled', value: await solo(good[1]) });
    // The two that fit shared a run; the other ran apart.
    expect(tower.runs).toEqual([2]);
  });

  it('refuses pixel values that do not match their shape before they join a batch', async () => {
    const b = new BatchingVisionRunner(new GatedTower(), 16);
    await expect(b.encode(new Float32Array(11), [1, 3, 2, 2])).rejects.toThrow(
      'pixel values hold 11 numbers but shape [1, 3, 2, 2] needs 12',
    );
    await expect(b.encode(new Float32Array(12), [3, 2, 2])).rejects.toThrow(/of shape \[N, C, H, W\]/);
    expect(b.stats.runs).toBe(0);
  });

  it('when a batched run fails, runs its members one by one so that only the bad one fails', async () => {
    const tower = new GatedTower(undefined, false);
    const b = new BatchingVisionRunner(tower, 16);
    const poisoned = image(9);
    poisoned.pixels[5] = Number.NaN;
    const imgs = [image(1), poisoned, image(2)];
    const res = await Promise.allSettled(imgs.map((m) => b.encode(m.pixels, m.shape)));
    expect(res[1]).toMatchObject({ status: 'rejected', reason: { message: 'NaN in the run' } });
    expect(res[0]).toEqual({ status: 'fulfilled', value: await solo(imgs[0]) });
    expect(res[2]).toEqual({ status: 'fulfilled', value: await solo(imgs[2]) });
    expect(tower.runs).toEqual([3, 1, 1, 1]);
    expect(b.stats.fallbacks).toBe(1);
  });

  it('an aborted caller leaves the queue, and one aborted mid-run loses only its own rows', async () => {
    const tower = new GatedTower();
    const b = new BatchingVisionRunner(tower, 16);
    const running = new AbortController();
    const queued = new AbortController();
    const first = b.encode(image(0).pixels, image(0).shape, { signal: running.signal });
    const second = b.encode(image(1).pixels, image(1).shape);
    await settle();
    const third = b.encode(image(2).pixels, image(2).shape, { signal: queued.signal });
    const fourth = b.encode(image(3).pixels, image(3).shape);
    queued.abort(new Error('client gone'));
    await expect(third).rejects.toThrow('client gone');
    running.abort(new Error('also gone'));
    await expect(first).rejects.toThrow('also gone');
    tower.release();
    expect(await second).toEqual(await solo(image(1)));
    await settle();
    tower.release();
    expect(await fourth).toEqual(await solo(image(3)));
    // The queued one never reached the tower.
    expect(tower.runs).toEqual([2, 1]);
    const gone = new AbortController();
    gone.abort(new Error('before'));
    await expect(b.encode(image(4).pixels, image(4).shape, { signal: gone.signal })).rejects.toThrow(
      'before',
    );
  });

  it.each([0, 1])('visionBatchSize %i: no queue, each call runs at once on its own', async (size) => {
    const tower = new GatedTower();
    const b = new BatchingVisionRunner(tower, size);
    const outs = [1, 2, 3].map((s) => b.encode(image(s, 2).pixels, image(s, 2).shape));
    await settle();
    expect(tower.maxInFlight).toBe(3);
    for (let i = 0; i < 3; i++) tower.release();
    await Promise.all(outs);
    expect(tower.runs).toEqual([2, 2, 2]);
    expect(b.stats).toMatchObject({ runs: 3, images: 3, tiles: 6, maxBatchTiles: 2 });
  });

  it('refuses a negative or fractional visionBatchSize, naming it', () => {
    expect(() => new BatchingVisionRunner(new GatedTower(), -1)).toThrow(
      /visionBatchSize must be an integer ≥ 0/,
    );
    expect(() => new BatchingVisionRunner(new GatedTower(), 2.5)).toThrow(/visionBatchSize/);
  });

  it('dispose refuses what is queued, lets the run under way finish, then disposes the tower', async () => {
    const tower = new GatedTower();
    const b = new BatchingVisionRunner(tower, 16);
    const first = b.encode(image(0).pixels, image(0).shape);
    await settle();
    const queued = b.encode(image(1).pixels, image(1).shape);
    const closed = b.dispose();
    await expect(queued).rejects.toThrow('the vision tower was closed before it ran');
    expect(tower.disposed).toBe(false);
    tower.release();
    await closed;
    expect(tower.disposed).toBe(true);
    expect(await first).toEqual(await solo(image(0)));
  });
});
