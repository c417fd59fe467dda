import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { SwitchyardError } from '../errors.js';
import { reportLoadProgress } from '../loader/progress.js';
import type { CachedGraph } from '../onnx/graph-cache.js';

/** Opens a cached graph, from memory when its weights lie in the checkpoint folder. */
export async function createSession(
  graph: CachedGraph,
  options: ort.InferenceSession.SessionOptions,
): Promise<ort.InferenceSession> {
  if (!graph.externalDataFolder) return ort.InferenceSession.create(graph.path, options);
  const bytes = new Uint8Array(readFileSync(graph.path));
  return ort.InferenceSession.create(bytes, {
    ...options,
    extra: { session: { model_external_initializers_file_folder_path: graph.externalDataFolder } },
  });
}

/** The CPU provider's session options (all graph optimizations, sequential execution). */
export function cpuSessionOptions(numThreads?: number): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    ...(numThreads ? { intraOpNumThreads: numThreads } : {}),
  };
}

/**
 * The webgpu provider's session options. Validation costs ~5 % of a bs1 step
 * (docs/decisions/0006); ORT's own default is 'basic', ours 'disabled'.
 */
export function webGpuSessionOptions(
  validationMode = 'disabled',
  extra: ort.InferenceSession.SessionOptions = {},
): ort.InferenceSession.SessionOptions {
  const provider = { name: 'webgpu', validationMode } as ort.InferenceSession.ExecutionProviderConfig;
  return { executionProviders: [provider], graphOptimizationLevel: 'all', ...extra };
}

/** A session for a cached graph; a load failure is a model_load error naming the graph and provider. */
export async function openSession(
  graph: CachedGraph,
  what: string,
  provider: string,
  options: ort.InferenceSession.SessionOptions,
): Promise<ort.InferenceSession> {
  const stage = `opening the ${what.replace(/ \(.*\)$/, '')} session`;
  reportLoadProgress(stage, 0, 1);
  try {
    const session = await createSession(graph, options);
    reportLoadProgress(stage, 1, 1);
    return session;
  } catch (e) {
    throw new SwitchyardError(
      `ONNX Runtime (${provider}) could not load the ${what} graph: ${(e as Error).message}`,
      'model_load',
    );
  }
}
