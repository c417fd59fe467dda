import type { DependencyContainer } from 'tsyringe';
import { IsolatedExecutor } from '../backends/isolated-executor.js';
import { backendRegistry, kvCacheRegistry, modelRegistry, schedulerRegistry } from '../container.js';
import type { Backend, ExecutorOptions } from '../contracts/backend.js';
import { SwitchyardError } from '../errors.js';
import type { Executor } from '../executor.js';
import type { KvCacheManager } from '../kv-cache.js';
import { Checkpoint } from '../loader/checkpoint.js';
import type { ModelSpec } from '../model.js';
import type { Scheduler } from '../scheduler.js';
import type { VisionRunner } from '../vision-runner.js';
import type { EngineInfo, EngineOptions } from './engine-options.js';
import { BatchingVisionRunner, DEFAULT_VISION_BATCH_SIZE } from './vision-batcher.js';

/** The parts an engine runs over, built from the names in `EngineOptions`. */
export interface EngineParts {
  info: EngineInfo;
  checkpoint: Checkpoint;
  spec: ModelSpec;
  executor: Executor;
  scheduler: Scheduler;
  kv: KvCacheManager;
  /** The backend's vision runner behind the batcher that encodes concurrent requests' images together. */
  vision?: BatchingVisionRunner;
}

/**
 * Looks the named parts up in the container's registries, opens the checkpoint, has the backend
 * build the executor, sizes the KV manager from the executor's pool and makes the scheduler.
 */
export async function assembleEngine(
  options: EngineOptions,
  container: DependencyContainer,
): Promise<EngineParts> {
  const backends = backendRegistry(container);
  const device = options.device ?? 'cpu';
  if (!backends.has(device)) {
    throw new SwitchyardError(
      `device '${device}' is not available; available: ${backends.names().join(', ')}`,
      'invalid_request',
      'device',
    );
  }
  const backend = backends.get(device);
  const visionBatchSize = options.visionBatchSize ?? DEFAULT_VISION_BATCH_SIZE;
  if (!Number.isInteger(visionBatchSize) || visionBatchSize < 0) {
    throw new SwitchyardError(
      `visionBatchSize must be an integer ≥ 0 (tiles per vision tower run; 0 or 1: no batching), got ${visionBatchSize}`,
      'invalid_request',
      'visionBatchSize',
    );
  }
  const others = backends.names().map((n) => backends.get(n));
  const { dtype, quantization } = checkBackendOptions(backend, options, others);
  const schedulerName = options.scheduler ?? 'continuous';
  const attentionName = options.attention ?? 'paged';
  const makeScheduler = schedulerRegistry(container).get(schedulerName);
  const makeKv = kvCacheRegistry(container).get(attentionName);
  const checkpoint = Checkpoint.open(options.model, {
    tokenizer: options.tokenizer,
    chatTemplate: options.chatTemplate,
  });
  const spec = modelRegistry(container).get(checkpoint.architecture).describe(checkpoint);
  const d = spec.decoder;
  const blockSize = options.blockSize ?? backend.defaultBlockSize ?? 16;
  const wantedLen = Math.min(options.maxModelLen ?? d.maxPositionEmbeddings, d.maxPositionEmbeddings);

  const executorOptions: ExecutorOptions = {
    blockSize,
    kvCacheTokens: options.kvCacheTokens,
    memoryUtilization: options.memoryUtilization,
    maxModelLen: wantedLen,
    dtype,
    quantization,
    numThreads: options.numThreads,
    settings: options.settings,
  };
  const isolation = executorIsolation(options);
  const modules = options.executorThread?.modules ?? [];
  if (isolation !== 'none' && modules.length === 0) {
    throw new SwitchyardError(
      `executorIsolation '${isolation}' needs the modules that register the model family there (executorThread.modules)`,
      'invalid_request',
      'executorThread',
    );
  }
  // The tower first: a backend that sizes its KV pool from free device memory must see the
  // tower's share in use (the cuda backend runs one full batch of tiles in createVisionRunner).
  const tower = await visionRunner(backend, checkpoint, spec, {
    dtype,
    settings: options.settings,
    maxTiles: Math.max(1, visionBatchSize),
  });
  let executor: Executor;
  try {
    executor =
      isolation === 'none'
        ? await backend.createExecutor(checkpoint, spec, executorOptions)
        : await IsolatedExecutor.create(
            { model: checkpoint.dir, modules, device: backend.name, options: executorOptions },
            {
              isolation,
              restart: {
                maxRestarts: options.executorThread?.maxRestarts,
                windowMs: options.executorThread?.restartWindowMs,
              },
            },
          );
  } catch (e) {
    await tower?.dispose();
    throw e;
  }
  try {
    const { numBlocks } = executor.pool;
    if (executor.pool.blockSize !== blockSize) {
      throw new SwitchyardError(
        `backend '${backend.name}' made a KV pool of block size ${executor.pool.blockSize}, not the ${blockSize} asked for`,
        'internal',
      );
    }
    const maxModelLen = Math.min(wantedLen, numBlocks * blockSize);
    const maxNumBatchedTokens =
      options.maxNumBatchedTokens ?? Math.max(2048, options.enableChunkedPrefill === false ? maxModelLen : 0);
    if (options.enableChunkedPrefill === false && maxNumBatchedTokens < maxModelLen) {
      throw new SwitchyardError(
        `with chunked prefill off, maxNumBatchedTokens (${maxNumBatchedTokens}) must be at least maxModelLen (${maxModelLen}); raise it or lower maxModelLen`,
        'invalid_request',
        'maxNumBatchedTokens',
      );
    }
    const vision = tower && new BatchingVisionRunner(tower, visionBatchSize);
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
      device: backend.name,
      dtype,
      blockSize,
      numBlocks,
      kvCacheTokens: numBlocks * blockSize,
      kvBytesPerToken: executor.kvBytesPerToken,
      maxModelLen,
      vocabSize: d.vocabSize,
    };
    return { info, checkpoint, spec, executor, scheduler, kv, vision };
  } catch (e) {
    await executor.dispose();
    await tower?.dispose();
    throw e;
  }
}

/** The dtype and quantization to ask the backend for; what it does not list is an error naming what it does. */
function checkBackendOptions(
  backend: Backend,
  options: EngineOptions,
  all: Backend[],
): { dtype: string; quantization: 'none' | 'int4' } {
  const dtype = options.dtype ?? backend.dtypes[0];
  if (!backend.dtypes.includes(dtype)) {
    throw new SwitchyardError(
      `dtype '${dtype}' is not supported on the ${backend.name} device; use ${backend.dtypes.join(' or ')}`,
      'invalid_request',
      'dtype',
    );
  }
  const quantization = options.quantization ?? 'none';
  if (!backend.quantizations.includes(quantization)) {
    const offering = all.filter((b) => b.quantizations.includes(quantization)).map((b) => b.name);
    const hint = offering.length
      ? `use ${quantization} with --device ${offering.join(' or ')}`
      : 'no device offers it';
    throw new SwitchyardError(
      `quantization '${quantization}' is not available on the ${backend.name} device; ${hint}`,
      'invalid_request',
      'quantization',
    );
  }
  return { dtype, quantization };
}

/** The vision tower's runner of a VLM on the backend, or none for a text model. */
async function visionRunner(
  backend: Backend,
  checkpoint: Checkpoint,
  spec: ModelSpec,
  options: { dtype: string; settings?: Record<string, unknown>; maxTiles: number },
): Promise<VisionRunner | undefined> {
  if (!spec.multimodal) return undefined;
  if (!backend.createVisionRunner) {
    throw new SwitchyardError(
      `the ${backend.name} device cannot run vision towers, which ${spec.architecture} needs; use another device`,
      'invalid_request',
      'device',
    );
  }
  return backend.createVisionRunner(checkpoint, spec.multimodal.tower, options);
}

/** `executorIsolation`, or 'thread' when only `executorThread` is given; an unknown value names the known ones. */
function executorIsolation(options: EngineOptions): 'none' | 'thread' | 'process' {
  const isolation = options.executorIsolation ?? (options.executorThread ? 'thread' : 'none');
  if (!['none', 'thread', 'process'].includes(isolation)) {
    throw new SwitchyardError(
      `executorIsolation must be 'none', 'thread' or 'process', got ${JSON.stringify(isolation)}`,
      'invalid_request',
      'executorIsolation',
    );
  }
  return isolation;
}
