import koffi from 'koffi';

type Fn = (...args: unknown[]) => number;

/** cudaMemcpyKind. */
const H2D = 1;
const D2H = 2;

/**
 * The few CUDA runtime calls the executor makes itself (device memory it owns, copies to and from
 * it, free memory), through the same libcudart the provider uses. Every error code becomes a thrown
 * Error with cudaGetErrorString's text. Device allocations are tracked; `freeAll()` frees them.
 */
export class CudaRuntime {
  private readonly fns: Record<string, Fn>;
  private readonly errorString: (code: number) => string;
  private readonly allocations = new Set<bigint>();
  private readonly hostAllocations = new Set<bigint>();

  constructor(cudartPath: string) {
    const lib = koffi.load(cudartPath);
    this.fns = {
      malloc: lib.func('int cudaMalloc(_Out_ void **ptr, size_t size)'),
      free: lib.func('int cudaFree(void *ptr)'),
      memset: lib.func('int cudaMemset(void *ptr, int value, size_t count)'),
      copyIn: lib.func('int cudaMemcpy(void *dst, const void *src, size_t count, int kind)'),
      memGetInfo: lib.func('int cudaMemGetInfo(_Out_ size_t *free, _Out_ size_t *total)'),
      synchronize: lib.func('int cudaDeviceSynchronize()'),
      mallocHost: lib.func('int cudaMallocHost(_Out_ void **ptr, size_t size)'),
      freeHost: lib.func('int cudaFreeHost(void *ptr)'),
    };
    this.errorString = lib.func('const char *cudaGetErrorString(int code)') as unknown as (
      c: number,
    ) => string;
  }

  private check(what: string, code: number): void {
    if (code !== 0) throw new Error(`${what} failed: ${this.errorString(code)} (cuda error ${code})`);
  }

  /** Device memory of `bytes`, as an address; freed by `free` or `freeAll`. */
  malloc(bytes: number): bigint {
    const out: unknown[] = [null];
    this.check(`cudaMalloc(${bytes})`, this.fns.malloc(out, bytes));
    const address = koffi.address(out[0]);
    this.allocations.add(address);
    return address;
  }

  free(address: bigint): void {
    if (!this.allocations.delete(address)) return;
    this.check('cudaFree', this.fns.free(koffi.as(address, 'void *')));
  }

  memset(address: bigint, value: number, bytes: number): void {
    this.check('cudaMemset', this.fns.memset(koffi.as(address, 'void *'), value, bytes));
  }

  /**
   * Host → device. From pinned memory (pass its address) the copy is complete on return; from a
   * JS array (pageable) the driver stages it first.
   */
  upload(address: bigint, src: ArrayBufferView | bigint, bytes?: number): void {
    const from = typeof src === 'bigint' ? koffi.as(src, 'void *') : src;
    const n = bytes ?? (src as ArrayBufferView).byteLength;
    this.check('cudaMemcpy H2D', this.fns.copyIn(koffi.as(address, 'void *'), from, n, H2D));
  }

  /** Device → host into `dst` (synchronous). */
  download(dst: ArrayBufferView, address: bigint, bytes = dst.byteLength): void {
    this.check('cudaMemcpy D2H', this.fns.copyIn(dst, koffi.as(address, 'void *'), bytes, D2H));
  }

  memInfo(): { free: number; total: number } {
    const free: number[] = [0];
    const total: number[] = [0];
    this.check('cudaMemGetInfo', this.fns.memGetInfo(free, total));
    return { free: Number(free[0]), total: Number(total[0]) };
  }

  synchronize(): void {
    this.check('cudaDeviceSynchronize', this.fns.synchronize());
  }

  /**
   * Pinned host memory of `bytes` (copies from it are complete when cudaMemcpy returns), viewed
   * as an ArrayBuffer; freed by `freeHost` or `freeAll`.
   */
  mallocHost(bytes: number): { address: bigint; view: ArrayBuffer } {
    const out: unknown[] = [null];
    this.check(`cudaMallocHost(${bytes})`, this.fns.mallocHost(out, bytes));
    const address = koffi.address(out[0]);
    this.hostAllocations.add(address);
    return { address, view: koffi.view(out[0], bytes) };
  }

  freeHost(address: bigint): void {
    if (!this.hostAllocations.delete(address)) return;
    this.check('cudaFreeHost', this.fns.freeHost(koffi.as(address, 'void *')));
  }

  /** Device allocations not yet freed. */
  get live(): number {
    return this.allocations.size + this.hostAllocations.size;
  }

  freeAll(): void {
    for (const a of [...this.allocations]) this.free(a);
    for (const a of [...this.hostAllocations]) this.freeHost(a);
  }
}
