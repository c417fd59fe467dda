import type { Backend } from '../../contracts/backend.js';
import { SwitchyardError } from '../../errors.js';
import { cpuBackend } from '../cpu/cpu-backend.js';
import { checkPagedAttention } from '../webgpu/paged-attention.js';
import type { CudaDtype, CudaSettings } from './cuda-executor.js';

/**
 * Block size the cuda backend runs best at: PagedAttention takes a slow path below 128 (ORT 1.29),
 * and 256 measured 8 % faster than 128 on a 0.5B bs1 step (docs/decisions/0008).
 */
export const CUDA_DEFAULT_BLOCK_SIZE = 256;

const SETTING_KEYS = new Set<keyof CudaSettings>([
  'cudaLibDir',
  'attentionMetadata',
  'fuseProjections',
  'fuseNorms',
  'linear',
  'argmaxChunks',
  'logLevel',
  'cudaGraph',
  'graphBatchSizes',
  'profilePrefix',
]);

/** The backend's `settings` as `CudaSettings`; an unknown key is an error naming the known ones. */
function cudaSettings(settings: Record<string, unknown> = {}): CudaSettings {
  for (const key of Object.keys(settings)) {
    if (!SETTING_KEYS.has(key as keyof CudaSettings)) {
      throw new SwitchyardError(
        `unknown cuda setting '${key}'; known: ${[...SETTING_KEYS].join(', ')}`,
        'invalid_request',
        'settings',
      );
    }
  }
  return settings as CudaSettings;
}

/**
 * ONNX Runtime's CUDA provider through the C API: the fp16 (or bf16) decoder with PagedAttention
 * over KV pools on the device, IO binding, CUDA graphs for decode steps, optional int4 weights.
 * Vision towers run on the CPU backend (their embeddings go to the decoder on the device).
 */
export const cudaBackend: Backend = {
  name: 'cuda',
  dtypes: ['float16', 'bfloat16'],
  quantizations: ['none', 'int4'],
  defaultBlockSize: CUDA_DEFAULT_BLOCK_SIZE,
  async createExecutor(checkpoint, model, options) {
    if (!this.dtypes.includes(options.dtype)) {
      throw new SwitchyardError(
        `dtype '${options.dtype}' is not supported on the cuda device; use ${this.dtypes.join(' or ')}`,
        'invalid_request',
        'dtype',
      );
    }
    checkPagedAttention(model.decoder, 'cuda');
    if (options.blockSize < 128) {
      process.emitWarning(
        `cuda: block size ${options.blockSize} takes PagedAttention's slow path (ORT 1.29 is fast from 128); use blockSize ${CUDA_DEFAULT_BLOCK_SIZE}`,
      );
    }
    // The executor (and koffi's native addon) load only when a cuda engine is made.
    const { CudaExecutor } = await import('./cuda-executor.js');
    return CudaExecutor.create(checkpoint, model.decoder, {
      blockSize: options.blockSize,
      dtype: options.dtype as CudaDtype,
      kvCacheTokens: options.kvCacheTokens,
      memoryUtilization: options.memoryUtilization,
      maxModelLen: options.maxModelLen,
      quantization: options.quantization,
      settings: cudaSettings(options.settings),
    });
  },
  /**
   * Towers run on the CPU provider for now: the same tower in a C API session on the CUDA
   * provider (`CapiVisionRunner`, tested on ORT's CPU provider) crashed inside its first run on
   * the H200 at every optimization level (ORT 1.29; docs/decisions/0008). Concurrent requests'
   * images are still encoded in one batch (the engine's `BatchingVisionRunner`).
   */
  createVisionRunner(checkpoint, tower) {
    return cpuBackend.createVisionRunner!(checkpoint, tower, { dtype: 'float32' });
  },
};
