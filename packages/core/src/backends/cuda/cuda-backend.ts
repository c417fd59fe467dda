import type { Backend } from '../../contracts/backend.js';
import { SwitchyardError } from '../../errors.js';
import type { VisionRunner } from '../../vision-runner.js';
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
  'visionTower',
  'int4MaxBatch',
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
 * Vision towers run on the CPU provider (`visionTower: 'cuda'`, opt-in: their own CUDA session).
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
    if (options.blockSize < 16 || (options.blockSize & (options.blockSize - 1)) !== 0) {
      throw new SwitchyardError(
        `cuda: PagedAttention needs a block size that is a power of two and at least 16, got ${options.blockSize}; use --block-size ${CUDA_DEFAULT_BLOCK_SIZE} (the default)`,
        'invalid_request',
        'blockSize',
      );
    }
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
   * Towers run on the CPU provider unless `settings.visionTower` is 'cuda': the tower in its own C
   * API session on the CUDA provider (`CapiVisionRunner`, tested on ORT's CPU provider in CI). On
   * the H200 that session gives every VLM fixture transformers' ids beside a small KV pool, but
   * its first run crashes the process (SIGSEGV) once the decoder's pool is large (25.6 GB crashed,
   * 5.1 GB ran; `switchyard serve`'s default pool is 90 % of the GPU), so it stays opt-in
   * (docs/decisions/0008). Either way concurrent requests' images are encoded in one batch (the
   * engine's `BatchingVisionRunner`).
   */
  async createVisionRunner(checkpoint, tower, options) {
    const settings = cudaSettings(options.settings);
    const where = settings.visionTower ?? 'cpu';
    if (where !== 'cpu' && where !== 'cuda') {
      throw new SwitchyardError(
        `cuda setting visionTower must be 'cpu' or 'cuda', got '${where}'`,
        'invalid_request',
        'settings',
      );
    }
    if (where === 'cpu') {
      return cpuBackend.createVisionRunner!(checkpoint, tower, { dtype: 'float32' });
    }
    const [{ openCudaProvider }, { CapiVisionRunner }] = await Promise.all([
      import('./cuda-provider.js'),
      import('./capi-vision-runner.js'),
    ]);
    const provider = openCudaProvider({ cudaLibDir: settings.cudaLibDir, logLevel: settings.logLevel });
    let runner: VisionRunner | undefined;
    try {
      runner = CapiVisionRunner.open(provider.ort, checkpoint, tower, {
        appendProvider: (so) =>
          provider.ort.appendProvider(so, provider.device, {
            arena_extend_strategy: 'kSameAsRequested',
            // cuDNN's convolution search within a small workspace, not all the free memory.
            cudnn_conv_use_max_workspace: '0',
          }),
        onDispose: provider.close,
      });
      // One full batch now, before the executor sizes its KV pool from the free memory, so the
      // tower's arena counts as in use (vLLM profiles its encoder before sizing the cache too).
      const n = Math.max(1, options.maxTiles ?? 1);
      const [h, w] = tower.imageSize;
      await runner.encode(new Float32Array(n * tower.numChannels * h * w), [n, tower.numChannels, h, w]);
      return runner;
    } catch (e) {
      if (runner) await runner.dispose();
      else provider.close();
      throw new SwitchyardError(
        `the cuda execution provider could not load the ${tower.name} vision tower: ${(e as Error).message}`,
        'model_load',
      );
    }
  },
};
