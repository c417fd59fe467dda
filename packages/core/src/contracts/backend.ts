import { SwitchyardError } from '../errors.js';
import type { Executor } from '../executor.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import type { ModelSpec, VisionTowerSpec } from '../model.js';
import type { VisionRunner } from '../vision-runner.js';

/** What the engine asks of a backend's executor. */
export interface ExecutorOptions {
  blockSize: number;
  /** Tokens the KV pool holds; undefined = the backend chooses (cpu/webgpu: a default byte budget; cuda: a fraction of free device memory). */
  kvCacheTokens?: number;
  /** Fraction of device memory for weights + KV (vLLM's --gpu-memory-utilization); device backends only. */
  memoryUtilization?: number;
  /** Longest sequence the engine will admit (sizes rotary tables, block tables). */
  maxModelLen: number;
  /** One of the backend's `dtypes`. */
  dtype: string;
  quantization: 'none' | 'int4';
  numThreads?: number;
  /** Backend-specific settings (e.g. WebGpuTuning), passed through untouched. */
  settings?: Record<string, unknown>;
}

/**
 * A backend: where and how the model runs (ONNX Runtime on the CPU, through webgpu, …). Registered
 * by name in `backendRegistry(container)`; `EngineOptions.device` names it. The engine checks
 * `dtype` and `quantization` against what the backend lists before calling it, creates the
 * executor first, then sizes the KV manager from `executor.pool`.
 */
export interface Backend {
  /** 'cpu' | 'webgpu' | 'cuda' | user names. */
  readonly name: string;
  /** The weight/activation dtypes it runs; the first is the default. */
  readonly dtypes: readonly string[];
  readonly quantizations: readonly ('none' | 'int4')[];
  /** KV block size when the user gives none (the engine's default is 16). */
  readonly defaultBlockSize?: number;
  /** Builds the decoder executor; its `pool` says how many blocks it allocated. */
  createExecutor(checkpoint: Checkpoint, model: ModelSpec, options: ExecutorOptions): Promise<Executor>;
  /**
   * Runs a model's vision tower (VLMs); absent = the backend cannot run towers. `dtype` is the
   * decoder's; a backend may run towers in another (cpu, webgpu and cuda run them in fp32).
   * `settings` are the executor's. The engine makes the tower before the executor, so a backend
   * that sizes its KV pool from free device memory sees the tower's memory in use: such a backend
   * runs one batch of `maxTiles` tiles (the engine's vision batch size) before returning, as vLLM
   * profiles its encoder before sizing the cache.
   */
  createVisionRunner?(
    checkpoint: Checkpoint,
    tower: VisionTowerSpec,
    options: { dtype: string; settings?: Record<string, unknown>; maxTiles?: number },
  ): Promise<VisionRunner>;
}

/**
 * KV pool tokens for a backend with a fixed byte budget: `kvCacheTokens` when given, else `bytes`
 * worth, at most `maxTokens`. Such a backend does not measure device memory, so it refuses
 * `memoryUtilization` rather than ignore it.
 */
export function kvPoolTokens(
  backend: string,
  options: Pick<ExecutorOptions, 'kvCacheTokens' | 'memoryUtilization'>,
  kvBytesPerToken: number,
  budget: { bytes: number; maxTokens: number },
): number {
  if (options.memoryUtilization !== undefined) {
    throw new SwitchyardError(
      `memoryUtilization is not supported on the ${backend} device; size the KV pool with kvCacheTokens`,
      'invalid_request',
      'memoryUtilization',
    );
  }
  return options.kvCacheTokens ?? Math.min(budget.maxTokens, Math.floor(budget.bytes / kvBytesPerToken));
}
