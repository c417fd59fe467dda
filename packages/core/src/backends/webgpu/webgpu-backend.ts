import { type Backend, kvPoolTokens } from '../../contracts/backend.js';
import { deviceMemoryBytes, kvTokensForMemoryFraction } from '../../engine/memory-fraction.js';
import { SwitchyardError } from '../../errors.js';
import { webGpuSessionOptions } from '../ort-session.js';
import { OrtVisionRunner } from '../ort-vision-runner.js';
import { checkPagedAttention } from './paged-attention.js';
import { WebGpuExecutor, type WebGpuTuning } from './webgpu-executor.js';

/** Default KV pool of the webgpu backend: a large pool on a GPU. */
export const WEBGPU_KV_BUDGET = { bytes: 16 * 1024 * 1024 * 1024, maxTokens: 262144 };

const TUNING_KEYS = new Set([
  'attentionMetadata',
  'validationMode',
  'linear',
  'fuseProjections',
  'fuseNorms',
]);

/** The backend's `settings` as `WebGpuTuning`; an unknown key is an error naming the known ones. */
function tuning(settings: Record<string, unknown> = {}): WebGpuTuning {
  for (const key of Object.keys(settings)) {
    if (!TUNING_KEYS.has(key)) {
      throw new SwitchyardError(
        `unknown webgpu setting '${key}'; known: ${[...TUNING_KEYS].join(', ')}`,
        'invalid_request',
        'settings',
      );
    }
  }
  return settings as WebGpuTuning;
}

/**
 * ONNX Runtime's webgpu provider in fp16: the decoder recipe with PagedAttention over KV pools on
 * the device (`WebGpuExecutor`), optional int4 weights; vision towers in fp32 on the GPU.
 */
export const webgpuBackend: Backend = {
  name: 'webgpu',
  dtypes: ['float16'],
  quantizations: ['none', 'int4'],
  async createExecutor(checkpoint, model, options) {
    const d = model.decoder;
    checkPagedAttention(d, 'webgpu');
    const kvBytesPerToken = 2 * d.numLayers * d.numKvHeads * d.headDim * 2;
    // The GPU has a device pool: a memory fraction sizes it (kvCacheTokens, when given, wins).
    let tokens = kvPoolTokens(
      'webgpu',
      { kvCacheTokens: options.kvCacheTokens },
      kvBytesPerToken,
      WEBGPU_KV_BUDGET,
    );
    if (options.memoryUtilization !== undefined && options.kvCacheTokens === undefined) {
      const totalBytes = deviceMemoryBytes();
      if (totalBytes === undefined) {
        throw new SwitchyardError(
          "the GPU's memory size is unknown (no nvidia-smi); size the KV cache with --kv-cache-tokens N",
          'invalid_request',
          'memoryUtilization',
        );
      }
      // Weights run in fp16 (int4 packs eight per 4 bytes, plus fp16 scales per 32).
      let numel = 0;
      for (const t of checkpoint.tensors.values()) numel += t.shape.reduce((a, b) => a * b, 1);
      tokens = kvTokensForMemoryFraction({
        fraction: options.memoryUtilization,
        totalBytes,
        weightBytes: numel * (options.quantization === 'int4' ? 0.75 : 2),
        kvBytesPerToken,
      });
    }
    const numBlocks = Math.max(1, Math.floor(tokens / options.blockSize));
    const settings = tuning(options.settings);
    return WebGpuExecutor.create(checkpoint, d, {
      numBlocks,
      blockSize: options.blockSize,
      maxModelLen: options.maxModelLen,
      ...settings,
      ...(options.quantization === 'int4' ? { linear: 'int4' as const } : {}),
    });
  },
  createVisionRunner(checkpoint, tower) {
    return OrtVisionRunner.create(checkpoint, tower, 'webgpu', webGpuSessionOptions());
  },
};
