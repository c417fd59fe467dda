import { SwitchyardError } from '../../errors.js';
import type { Executor } from '../../executor.js';
import type { Checkpoint } from '../../loader/checkpoint.js';
import type { ModelSpec } from '../../model.js';
import { CudaExecutor, type CudaSettings } from './cuda-executor.js';

export { CudaExecutor, type CudaExecutorOptions, type CudaSettings } from './cuda-executor.js';
export { CudaRuntime } from './cuda-runtime.js';
export { type CudaLibraries, defaultOrtCudaDir, locateCudaLibraries, setupCuda } from './install.js';
export { OrtError, OrtRuntime } from './ort-capi.js';

/**
 * The backend seam's contract (core's `Backend` / `ExecutorOptions` once it lands in main; kept
 * here structurally identical until then).
 */
export interface ExecutorOptions {
  blockSize: number;
  /** undefined = the backend chooses: for cuda, memoryUtilization × free memory after weights. */
  kvCacheTokens?: number;
  memoryUtilization?: number;
  maxModelLen: number;
  /** One of `backend.dtypes`. */
  dtype: string;
  quantization: 'none' | 'int4';
  numThreads?: number;
  settings?: Record<string, unknown>;
}

export interface Backend {
  readonly name: string;
  readonly dtypes: readonly string[];
  readonly quantizations: readonly ('none' | 'int4')[];
  createExecutor(checkpoint: Checkpoint, model: ModelSpec, options: ExecutorOptions): Promise<Executor>;
}

/** Block size the cuda backend runs best at: PagedAttention takes a slow path below 128 (ORT 1.29). */
export const CUDA_DEFAULT_BLOCK_SIZE = 128;

/** ONNX Runtime's CUDA provider through the C API: fp16 decoder, PagedAttention, IO binding. */
export const cudaBackend: Backend = {
  name: 'cuda',
  dtypes: ['float16'],
  quantizations: ['none', 'int4'],
  async createExecutor(checkpoint, model, options) {
    if (!this.dtypes.includes(options.dtype)) {
      throw new SwitchyardError(
        `dtype '${options.dtype}' is not supported on the cuda device; use ${this.dtypes.join(' or ')}`,
        'invalid_request',
        'dtype',
      );
    }
    return CudaExecutor.create(checkpoint, model.decoder, {
      blockSize: options.blockSize,
      kvCacheTokens: options.kvCacheTokens,
      memoryUtilization: options.memoryUtilization,
      maxModelLen: options.maxModelLen,
      quantization: options.quantization,
      settings: options.settings as CudaSettings | undefined,
    });
  },
};
