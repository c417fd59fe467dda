export type { DependencyContainer } from 'tsyringe';
export * from './backends/cpu/cpu-backend.js';
export { CpuExecutor, type CpuExecutorOptions } from './backends/cpu/cpu-executor.js';
export * from './backends/cpu/gathered-attention.js';
export { CUDA_DEFAULT_BLOCK_SIZE, cudaBackend } from './backends/cuda/cuda-backend.js';
export {
  type CudaLibraries,
  defaultOrtCudaDir,
  locateCudaLibraries,
  type SetupCudaOptions,
  setupCuda,
} from './backends/cuda/install.js';
export type { ExecutorIsolation } from './backends/executor-host.js';
export * from './backends/index.js';
export {
  IsolatedExecutor,
  /** The earlier name of `IsolatedExecutor` (its default isolation is a thread). */
  IsolatedExecutor as ThreadedExecutor,
  type IsolatedExecutorOptions,
  type RestartPolicy,
} from './backends/isolated-executor.js';
export * from './backends/ort-vision-runner.js';
export * from './backends/webgpu/paged-attention.js';
export * from './backends/webgpu/webgpu-backend.js';
export {
  WebGpuExecutor,
  type WebGpuExecutorOptions,
  type WebGpuTuning,
} from './backends/webgpu/webgpu-executor.js';
export * from './container.js';
export * from './contracts/backend.js';
export * from './engine/assemble-engine.js';
export * from './engine/chat-prompt.js';
export { checkRequestKeys, REQUEST_KEYS } from './engine/check-request-keys.js';
export * from './engine/engine.js';
export * from './engine/generation-defaults.js';
export * from './engine/image-cache.js';
export * from './engine/input-processor.js';
export * from './engine/memory-fraction.js';
export * from './engine/metrics.js';
export * from './engine/multimodal-input.js';
export * from './engine/output-processor.js';
export * from './engine/request.js';
export * from './engine/vision-batcher.js';
export * from './errors.js';
export * from './executor.js';
export * from './image/index.js';
export * from './kv-cache.js';
export * from './loader/chat-template.js';
export * from './loader/checkpoint.js';
export * from './loader/progress.js';
export * from './loader/safetensors.js';
export * from './loader/tokenizer.js';
export * from './loader/tokenizer-thread.js';
export * from './model.js';
export * from './models/llama-family.js';
export * from './models/vlm.js';
export * from './onnx/decoder-recipe.js';
export * from './onnx/graph-builder.js';
export * from './onnx/graph-cache.js';
export * from './onnx/rope.js';
export * from './onnx/vit.js';
export * from './onnx/weights.js';
export * from './prefix-keys.js';
export * from './registry.js';
export * from './sampling/detokenizer.js';
export * from './sampling/rng.js';
export * from './sampling/sampler.js';
export * from './sampling/validate.js';
export * from './sampling-params.js';
export * from './scheduler.js';
export * from './scheduling/policies.js';
export * from './scheduling/queue.js';
export * from './scheduling/queued-scheduler.js';
export * from './sequence.js';
export * from './vision-runner.js';
