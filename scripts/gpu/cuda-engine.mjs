// The engine on the cuda executor, for the GPU scripts. Until the backend seam registers
// `cudaBackend` (device 'cuda'), the engine's webgpu executor factory is swapped for the cuda one:
// the engine, scheduler and KV manager are the real ones.
import { createEngine } from '@switchyard/server';
import { CudaExecutor } from '../../packages/core/dist/backends/cuda/index.js';
import { WebGpuExecutor } from '../../packages/core/dist/ort/webgpu-executor.js';

/** The last executor created (its `timing` splits each step). */
export const created = { executor: undefined };

export async function createCudaEngine(options, settings = {}) {
  WebGpuExecutor.create = async (ckpt, spec, o) => {
    const ex = await CudaExecutor.create(ckpt, spec, {
      blockSize: o.blockSize,
      kvCacheTokens: o.numBlocks * o.blockSize,
      maxModelLen: o.maxModelLen,
      quantization: o.linear === 'int4' ? 'int4' : 'none',
      settings,
    });
    created.executor = ex;
    return ex;
  };
  return createEngine({ blockSize: 128, ...options, device: 'webgpu' });
}
