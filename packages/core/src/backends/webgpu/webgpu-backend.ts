import { type Backend, kvPoolTokens } from '../../contracts/backend.js';
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
    const tokens = kvPoolTokens('webgpu', options, kvBytesPerToken, WEBGPU_KV_BUDGET);
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
