import { describe, expect, it } from 'vitest';
import { ImageEmbeddingCache } from './image-cache.js';

/** A computation that waits for `release`; `signal()` is the one the cache gave it. */
function heldRun() {
  let release!: (v: Float32Array) => void;
  let signal!: AbortSignal;
  const compute = (s: AbortSignal) => {
    signal = s;
    return new Promise<Float32Array>((r) => {
      release = r;
    });
  };
  return { compute, release: (v: Float32Array) => release(v), signal: () => signal };
}

describe('ImageEmbeddingCache', () => {
  const emb = (n: number) => new Float32Array(n);

  it('computes once per hash, counting hits and misses', async () => {
    const cache = new ImageEmbeddingCache(1024);
    let runs = 0;
    const compute = async () => {
      runs++;
      return emb(4);
    };
    await cache.get('a', compute);
    await cache.get('a', compute);
    expect(runs).toBe(1);
    expect([cache.hits, cache.misses]).toEqual([1, 1]);
  });

  it('shares one computation between concurrent requests', async () => {
    const cache = new ImageEmbeddingCache(1024);
    let runs = 0;
    const compute = () =>
      new Promise<Float32Array>((r) =>
        setTimeout(() => {
          runs++;
          r(emb(4));
        }, 5),
      );
    const [x, y] = await Promise.all([cache.get('a', compute), cache.get('a', compute)]);
    expect(runs).toBe(1);
    expect(x).toBe(y);
  });

  it('evicts the least recently used past its capacity in bytes', async () => {
    const cache = new ImageEmbeddingCache(3 * 16);
    for (const k of ['a', 'b', 'c']) await cache.get(k, async () => emb(4));
    await cache.get('a', async () => emb(4)); // a is now the most recent
    await cache.get('d', async () => emb(4)); // evicts b
    expect(cache.sizeBytes).toBe(48);
    let recomputed = false;
    await cache.get('b', async () => {
      recomputed = true;
      return emb(4);
    });
    expect(recomputed).toBe(true);
  });

  it('forgets a failed computation so the next request retries', async () => {
    const cache = new ImageEmbeddingCache(1024);
    await expect(cache.get('a', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(cache.get('a', async () => emb(1))).resolves.toHaveLength(1);
  });

  it('a waiter that aborts leaves alone: the others still get the shared run', async () => {
    const cache = new ImageEmbeddingCache(1024);
    const run = heldRun();
    const gone = new AbortController();
    const a = cache.get('a', run.compute, gone.signal);
    const b = cache.get('a', run.compute, new AbortController().signal);
    gone.abort(new Error('client gone'));
    await expect(a).rejects.toThrow('client gone');
    expect(run.signal().aborted).toBe(false);
    run.release(emb(4));
    await expect(b).resolves.toHaveLength(4);
    expect(cache.size).toBe(1);
  });

  it('abandons the run once every waiter has aborted; the next request computes afresh', async () => {
    const cache = new ImageEmbeddingCache(1024);
    const signals: AbortSignal[] = [];
    const never = (signal: AbortSignal) => {
      signals.push(signal);
      return new Promise<Float32Array>((_, reject) =>
        signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
      );
    };
    const x = new AbortController();
    const y = new AbortController();
    const a = cache.get('a', never, x.signal);
    const b = cache.get('a', never, y.signal);
    x.abort(new Error('x gone'));
    expect(signals[0].aborted).toBe(false);
    y.abort(new Error('y gone'));
    await expect(a).rejects.toThrow('x gone');
    await expect(b).rejects.toThrow('y gone');
    expect(signals[0].aborted).toBe(true);
    await expect(cache.get('a', async () => emb(2))).resolves.toHaveLength(2);
    expect(cache.size).toBe(1);
    expect([cache.hits, cache.misses]).toEqual([1, 2]);
  });

  it('a waiter with no signal keeps the run alive when the others abort', async () => {
    const cache = new ImageEmbeddingCache(1024);
    const run = heldRun();
    const gone = new AbortController();
    const a = cache.get('a', run.compute, gone.signal);
    const b = cache.get('a', run.compute);
    gone.abort(new Error('gone'));
    await expect(a).rejects.toThrow('gone');
    expect(run.signal().aborted).toBe(false);
    run.release(emb(3));
    await expect(b).resolves.toHaveLength(3);
  });
});
