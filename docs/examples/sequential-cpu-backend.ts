/**
 * A backend registered from user code: ONNX Runtime's CPU provider with other session options —
 * one thread, no memory arena, basic graph optimizations only (steadier latency on a busy host,
 * at some cost in speed) — and a small fixed KV pool (4096 tokens unless `kvCacheTokens` says
 * otherwise). It reuses core's `CpuExecutor` and the CPU vision runner; nothing in Switchyard's
 * packages changes.
 *
 *   const container = registerBuiltins(createContainer());
 *   register(container);
 *   const engine = await createEngine({ model, device: 'cpu-sequential', container });
 */
import {
  type Backend,
  backendRegistry,
  CpuExecutor,
  cpuBackend,
  type DependencyContainer,
} from '@switchyard/core';

/** ORT session options of this backend, laid over core's CPU defaults. */
export const SEQUENTIAL_SESSION_OPTIONS = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  enableCpuMemArena: false,
  graphOptimizationLevel: 'basic',
} as const;

export const sequentialCpuBackend: Backend = {
  name: 'cpu-sequential',
  dtypes: ['float32'],
  quantizations: ['none'],
  createExecutor(checkpoint, model, options) {
    const tokens = options.kvCacheTokens ?? 4096;
    return CpuExecutor.create(checkpoint, model.decoder, {
      numBlocks: Math.max(1, Math.floor(tokens / options.blockSize)),
      blockSize: options.blockSize,
      sessionOptions: SEQUENTIAL_SESSION_OPTIONS,
    });
  },
  createVisionRunner: (checkpoint, tower, options) =>
    cpuBackend.createVisionRunner!(checkpoint, tower, options),
};

export function register(container: DependencyContainer): void {
  backendRegistry(container).register(sequentialCpuBackend.name, sequentialCpuBackend);
}
