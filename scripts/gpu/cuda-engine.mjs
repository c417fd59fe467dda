// The engine on the cuda backend (device 'cuda'), for the GPU scripts: the real engine, scheduler
// and KV manager. `engine.executor` is the CudaExecutor (its `timing` splits each step).
import { createEngine } from '@switchyard/server/engine';

export function createCudaEngine(options, settings = {}) {
  return createEngine({ blockSize: 256, ...options, device: 'cuda', settings });
}
