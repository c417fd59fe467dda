export { CUDA_DEFAULT_BLOCK_SIZE, cudaBackend } from './cuda-backend.js';
export {
  CudaExecutor,
  type CudaExecutorOptions,
  type CudaSettings,
  DEFAULT_GRAPH_BATCH_SIZES,
} from './cuda-executor.js';
export { CudaRuntime } from './cuda-runtime.js';
export { type CudaLibraries, defaultOrtCudaDir, locateCudaLibraries, setupCuda } from './install.js';
export { OrtError, OrtRuntime } from './ort-capi.js';
