// The engine on the cuda backend (device 'cuda'), for the GPU scripts: the real engine, scheduler
// and KV manager. `engine.executor` is the CudaExecutor (its `timing` splits each step), unless
// the executor runs elsewhere:
//   EXECUTOR_THREAD=1            on a worker thread (executorIsolation 'thread')
//   EXECUTOR_ISOLATION=process   in a child process, restarted if it crashes (decision 0015)
import { createEngine } from '@switchyard/server/engine';

export function createCudaEngine(options, settings = {}) {
  const isolation =
    process.env.EXECUTOR_ISOLATION ?? (process.env.EXECUTOR_THREAD === '1' ? 'thread' : 'none');
  return createEngine({
    blockSize: 256,
    ...options,
    executorIsolation: isolation,
    device: 'cuda',
    settings,
  });
}
