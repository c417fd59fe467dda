import { SwitchyardError } from '../errors.js';

interface Waiter {
  pixels: number;
  grant: () => void;
}

/**
 * A weighted semaphore over decoded pixels: the image work of all requests together holds at most
 * `capacity` pixels at once (a decoded pixel costs about 7 bytes on the way to the processor's
 * output). Images wait in arrival order; at most `maxWaiting` wait, more are refused as
 * `overloaded` (HTTP 429). Mutated by `acquire` and the release functions it hands out.
 */
export class PixelBudget {
  private used = 0;
  private readonly waiters: Waiter[] = [];

  constructor(
    readonly capacity: number,
    readonly maxWaiting: number,
  ) {}

  get inUse(): number {
    return this.used;
  }

  get numWaiting(): number {
    return this.waiters.length;
  }

  /**
   * Waits until `pixels` (at most the capacity) fit, then holds them until the returned release is
   * called. Aborting `signal` while waiting leaves the queue and rejects with the signal's reason.
   */
  async acquire(pixels: number, signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    const want = Math.min(pixels, this.capacity);
    const release = () => {
      let done = false;
      return () => {
        if (done) return;
        done = true;
        this.used -= want;
        this.wakeWaiters();
      };
    };
    if (this.waiters.length === 0 && this.used + want <= this.capacity) {
      this.used += want;
      return release();
    }
    if (this.waiters.length >= this.maxWaiting) {
      throw new SwitchyardError(
        `image work is at its limit: ${this.waiters.length} images already wait for the ${this.capacity}-pixel budget of images decoded at once; retry later, or raise --max-image-pixels-in-flight`,
        'overloaded',
        'image',
      );
    }
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        pixels: want,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        this.wakeWaiters();
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
    return release();
  }

  private wakeWaiters(): void {
    while (this.waiters.length > 0 && this.used + this.waiters[0].pixels <= this.capacity) {
      const next = this.waiters.shift()!;
      this.used += next.pixels;
      next.grant();
    }
  }
}
