import { SwitchyardError } from '../errors.js';
import type { MultimodalSpec, ProcessedImage } from '../model.js';
import { DEFAULT_MAX_PIXELS, decodeImage, readImageHeader } from './decode.js';
import { PixelBudget } from './pixel-budget.js';
import { type ImageWorkerOptions, ImageWorkerPool } from './worker-pool.js';

/** Limits on image work (see `ImagePipeline`). */
export interface ImageLimits {
  /** Pixels (width × height from the headers) of all images of one request together (default 64 MP). */
  maxPixelsPerRequest?: number;
  /** Pixels being decoded and preprocessed at once, all requests together (default 64 MP). */
  maxPixelsInFlight?: number;
  /** Images that may wait for room in that budget; more get `overloaded` (default 1024). */
  maxWaiting?: number;
  /**
   * Decode and preprocess on worker threads (see `ImageWorkerOptions`); absent or false: on this
   * thread (a one-shot CLI run: no threads to start).
   */
  workers?: ImageWorkerOptions | false;
}

export const DEFAULT_MAX_IMAGE_PIXELS_IN_FLIGHT = 64_000_000;

function megapixels(n: number): string {
  return `${Number((n / 1e6).toFixed(1))} MP`;
}

/**
 * A request's images from bytes to processor outputs, within budgets: the headers are read first
 * and their pixels summed against the per-request limit (nothing is decoded for a request over
 * it); each image then waits for its pixels in the server-wide budget of pixels decoded at once,
 * and is decoded and preprocessed, on worker threads when configured. Aborting the signal stops
 * the request wherever it is.
 */
export class ImagePipeline {
  readonly maxPixelsPerRequest: number;
  readonly budget: PixelBudget;
  private readonly pool?: ImageWorkerPool;

  constructor(
    private readonly spec: MultimodalSpec,
    limits: ImageLimits = {},
  ) {
    this.maxPixelsPerRequest = limits.maxPixelsPerRequest ?? DEFAULT_MAX_PIXELS;
    this.budget = new PixelBudget(
      limits.maxPixelsInFlight ?? DEFAULT_MAX_IMAGE_PIXELS_IN_FLIGHT,
      limits.maxWaiting ?? 1024,
    );
    if (limits.workers) this.pool = new ImageWorkerPool(limits.workers);
  }

  /** Threads decoding images (0: this thread, through sharp's own). */
  get numThreads(): number {
    return this.pool?.size ?? 0;
  }

  async process(images: Uint8Array[], signal?: AbortSignal): Promise<ProcessedImage[]> {
    const max = this.maxPixelsPerRequest;
    const headers = await Promise.all(images.map((b) => readImageHeader(b, { maxPixels: max })));
    const total = headers.reduce((n, h) => n + h.width * h.height, 0);
    if (total > max) {
      const sizes = headers.map((h) => `${h.width}×${h.height}`).join(', ');
      throw new SwitchyardError(
        `image: the request's ${images.length} images hold ${megapixels(total)} together (${sizes}), over the per-request limit of ${megapixels(max)}; send fewer or smaller images, or ask the operator to raise --max-image-pixels`,
        'invalid_request',
        'image',
      );
    }
    // Each image holds its own pixels of the budget while it is worked on (no image waits while
    // holding any, so requests cannot deadlock); an image larger than the whole budget runs alone.
    // Settled, not raced: a failed or aborted image holds its pixels until its work has stopped.
    const results = await Promise.allSettled(
      images.map((b, i) => this.one(b, headers[i].width * headers[i].height, signal)),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    signal?.throwIfAborted();
    return results.map((r) => (r as PromiseFulfilledResult<ProcessedImage>).value);
  }

  async close(): Promise<void> {
    await this.pool?.close();
  }

  private async one(bytes: Uint8Array, pixels: number, signal?: AbortSignal): Promise<ProcessedImage> {
    const release = await this.budget.acquire(pixels, signal);
    try {
      if (this.pool) return await this.pool.run(bytes, this.maxPixelsPerRequest, signal);
      const image = await decodeImage(bytes, { maxPixels: this.maxPixelsPerRequest });
      signal?.throwIfAborted();
      return this.spec.process(image);
    } finally {
      release();
    }
  }
}
