import type * as ort from 'onnxruntime-node';
import { type Backend, kvPoolTokens } from '../../contracts/backend.js';
import { SwitchyardError } from '../../errors.js';
import { cpuSessionOptions } from '../ort-session.js';
import { OrtVisionRunner } from '../ort-vision-runner.js';
import { CpuExecutor } from './cpu-executor.js';

/** Default KV pool of the CPU backend: a modest share of host memory. */
export const CPU_KV_BUDGET = { bytes: 512 * 1024 * 1024, maxTokens: 32768 };

export interface CpuBackendOptions {
  /** Registry name (default 'cpu'). */
  name?: string;
  /** ORT session options laid over the defaults, for the decoder and the vision tower. */
  sessionOptions?: ort.InferenceSession.SessionOptions;
}

/**
 * ONNX Runtime's CPU provider in fp32: the decoder recipe with gathered attention over a KV pool
 * in host memory (`CpuExecutor`), vision towers in fp32. `createCpuBackend({ name, sessionOptions })`
 * makes variants with other ORT settings.
 */
export function createCpuBackend({ name = 'cpu', sessionOptions }: CpuBackendOptions = {}): Backend {
  return {
    name,
    dtypes: ['float32'],
    quantizations: ['none'],
    async createExecutor(checkpoint, model, options) {
      const d = model.decoder;
      if (options.memoryUtilization !== undefined) {
        throw new SwitchyardError(
          'a GPU memory fraction needs a device pool, and the cpu backend has none; size the KV cache with --kv-cache-tokens N (or use --device webgpu)',
          'invalid_request',
          'memoryUtilization',
        );
      }
      const unknown = Object.keys(options.settings ?? {});
      if (unknown.length > 0) {
        throw new SwitchyardError(
          `the ${name} backend takes no settings; got ${unknown.join(', ')} (settings are for webgpu and cuda)`,
          'invalid_request',
          'settings',
        );
      }
      const kvBytesPerToken = 2 * d.numLayers * d.numKvHeads * d.headDim * 4;
      const tokens = kvPoolTokens(name, options, kvBytesPerToken, CPU_KV_BUDGET);
      const numBlocks = Math.max(1, Math.floor(tokens / options.blockSize));
      return CpuExecutor.create(checkpoint, d, {
        numBlocks,
        blockSize: options.blockSize,
        numThreads: options.numThreads,
        sessionOptions,
      });
    },
    createVisionRunner(checkpoint, tower) {
      return OrtVisionRunner.create(checkpoint, tower, 'cpu', { ...cpuSessionOptions(), ...sessionOptions });
    },
  };
}

/** The built-in 'cpu' backend. */
export const cpuBackend: Backend = createCpuBackend();
