import type { DependencyContainer } from 'tsyringe';
import { kvCacheRegistry, modelRegistry, schedulerRegistry } from '../container.js';
import { SwitchyardError } from '../errors.js';
import type { Executor } from '../executor.js';
import type { KvCacheManager } from '../kv-cache.js';
import { Checkpoint } from '../loader/checkpoint.js';
import type { ModelSpec } from '../model.js';
import { CpuExecutor } from '../ort/cpu-executor.js';
import { VisionEncoder } from '../ort/vision-encoder.js';
import { WebGpuExecutor } from '../ort/webgpu-executor.js';
import type { Scheduler } from '../scheduler.js';
import type { VisionRunner } from '../vision-runner.js';
import type { EngineInfo, EngineOptions } from './engine-options.js';

/** The parts an engine runs over, built from the names in `EngineOptions`. */
export interface EngineParts {
  info: EngineInfo;
  checkpoint: Checkpoint;
  spec: ModelSpec;
  executor: Executor;
  scheduler: Scheduler;
  kv: KvCacheManager;
  vision?: VisionRunner;
}

/** Default KV pool sizes: a modest share of host memory on CPU, a large pool on a GPU. */
const DEFAULT_KV_BYTES = {
  cpu: { bytes: 512 * 1024 * 1024, maxTokens: 32768 },
  webgpu: { bytes: 16 * 1024 * 1024 * 1024, maxTokens: 262144 },
};

/**
 * Looks the named parts up in the container's registries, opens the checkpoint, builds the
 * executor, sizes the KV manager from its pool and makes the scheduler.
 */
export async function assembleEngine(
  options: EngineOptions,
  container: DependencyContainer,
): Promise<EngineParts> {
  const device = options.device ?? 'cpu';
  const supported: Record<string, string[]> = { cpu: ['float32'], webgpu: ['float16'] };
  if (!supported[device]) {
    throw new SwitchyardError(
      `device '${device}' is not available; available: cpu, webgpu`,
      'invalid_request',
      'device',
    );
  }
  const dtype = options.dtype ?? supported[device][0];
  if (!supported[device].includes(dtype)) {
    throw new SwitchyardError(
      `dtype '${dtype}' is not supported on the ${device} device; use ${supported[device].join(' or ')}`,
      'invalid_request',
      'dtype',
    );
  }
  if (
    (options.quantization ?? 'none') !== 'none' &&
    (options.quantization !== 'int4' || device !== 'webgpu')
  ) {
    throw new SwitchyardError(
      `quantization '${options.quantization}' is not available on the ${device} device; use int4 with --device webgpu`,
      'invalid_request',
      'quantization',
    );
  }
  const schedulerName = options.scheduler ?? 'continuous';
  const attentionName = options.attention ?? 'paged';
  const makeScheduler = schedulerRegistry(container).get(schedulerName);
  const makeKv = kvCacheRegistry(container).get(attentionName);
  const checkpoint = Checkpoint.open(options.model);
  const spec = modelRegistry(container).get(checkpoint.architecture).describe(checkpoint);
  const d = spec.decoder;

  const blockSize = options.blockSize ?? 16;
  const kvBytesPerToken = 2 * d.numLayers * d.numKvHeads * d.headDim * (dtype === 'float16' ? 2 : 4);
  const budget = DEFAULT_KV_BYTES[device as keyof typeof DEFAULT_KV_BYTES];
  const kvTokens =
    options.kvCacheTokens ?? Math.min(budget.maxTokens, Math.floor(budget.bytes / kvBytesPerToken));
  const numBlocks = Math.max(1, Math.floor(kvTokens / blockSize));
  const maxModelLen = Math.min(
    options.maxModelLen ?? d.maxPositionEmbeddings,
    d.maxPositionEmbeddings,
    numBlocks * blockSize,
  );
  const maxNumBatchedTokens =
    options.maxNumBatchedTokens ?? Math.max(2048, options.enableChunkedPrefill === false ? maxModelLen : 0);
  if (options.enableChunkedPrefill === false && maxNumBatchedTokens < maxModelLen) {
    throw new SwitchyardError(
      `with chunked prefill off, maxNumBatchedTokens (${maxNumBatchedTokens}) must be at least maxModelLen (${maxModelLen}); raise it or lower maxModelLen`,
      'invalid_request',
      'maxNumBatchedTokens',
    );
  }

  const executor: Executor =
    device === 'webgpu'
      ? await WebGpuExecutor.create(checkpoint, d, {
          numBlocks,
          blockSize,
          maxModelLen,
          ...(options.quantization === 'int4' ? { linear: 'int4' as const } : {}),
          ...options.webgpu,
        })
      : await CpuExecutor.create(checkpoint, d, { numBlocks, blockSize, numThreads: options.numThreads });
  const vision = spec.multimodal
    ? await VisionEncoder.create(checkpoint, spec.multimodal.encoder, {
        device: device === 'webgpu' ? 'webgpu' : 'cpu',
      })
    : undefined;
  const kv = makeKv({ blockSize, numBlocks, enablePrefixCaching: options.enablePrefixCaching ?? true });
  const scheduler = makeScheduler(
    {
      maxNumSeqs: options.maxNumSeqs ?? 64,
      maxNumBatchedTokens,
      maxModelLen,
      enableChunkedPrefill: options.enableChunkedPrefill ?? true,
      policy: options.policy ?? 'fcfs',
    },
    kv,
  );
  const info: EngineInfo = {
    model: checkpoint.dir,
    architecture: checkpoint.architecture,
    scheduler: schedulerName,
    attention: attentionName,
    device,
    dtype,
    blockSize,
    numBlocks,
    kvCacheTokens: numBlocks * blockSize,
    kvBytesPerToken: executor.kvBytesPerToken,
    maxModelLen,
    vocabSize: d.vocabSize,
  };
  return { info, checkpoint, spec, executor, scheduler, kv, vision };
}
