/**
 * Image embeddings by content hash (LightLLM keeps such an MD5-keyed LRU): a hit skips the vision
 * encoder. Bounded by bytes; least recently used entries go first. Concurrent requests for the
 * same image share one encoder run.
 */
export class ImageEmbeddingCache {
  private readonly entries = new Map<string, Float32Array>();
  private readonly inflight = new Map<string, Promise<Float32Array>>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(
    readonly capacityBytes: number,
    /** At most this many entries (LightLLM counts images); undefined: bytes alone bound it. */
    readonly maxEntries?: number,
  ) {}

  /** The cached embeddings of `hash`, or those `compute` makes (once, however many ask at once). */
  async get(hash: string, compute: () => Promise<Float32Array>): Promise<Float32Array> {
    const cached = this.entries.get(hash);
    if (cached) {
      this.hits++;
      this.entries.delete(hash);
      this.entries.set(hash, cached);
      return cached;
    }
    const pending = this.inflight.get(hash);
    if (pending) {
      this.hits++;
      return pending;
    }
    this.misses++;
    const promise = compute().finally(() => this.inflight.delete(hash));
    this.inflight.set(hash, promise);
    const value = await promise;
    this.put(hash, value);
    return value;
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
