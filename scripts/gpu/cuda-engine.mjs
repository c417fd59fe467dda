// The engine on the cuda backend (device 'cuda'), for the GPU scripts: the real engine, scheduler
// and KV manager. `engine.executor` is the CudaExecutor (its `timing` splits each step).
import { createEngine } from '@switchyard/server/engine';

export function createCudaEngine(options, settings = {}) {
  // EXECUTOR_THREAD=1: the executor on a worker thread (executorThread).
  const thread = process.env.EXECUTOR_THREAD === '1' ? { executorThread: {} } : {};
  return createEngine({ blockSize: 256, ...options, ...thread, device: 'cuda', settings });
}
