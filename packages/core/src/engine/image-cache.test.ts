import { describe, expect, it } from 'vitest';
import { ImageEmbeddingCache } from './image-cache.js';

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
});
