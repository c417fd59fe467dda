import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { SwitchyardError } from '../errors.js';
import { reportLoadProgress } from '../loader/progress.js';
import type { CachedGraph } from './graph-cache.js';

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

/** A CPU session for a cached graph; a load failure is a model_load error naming the graph. */
export async function openCpuSession(
  graph: CachedGraph,
  what: string,
  dir: string,
  numThreads?: number,
): Promise<ort.InferenceSession> {
  const stage = `opening the ${what} session`;
  reportLoadProgress(stage, 0, 1);
  try {
    const session = await createSession(graph, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      ...(numThreads ? { intraOpNumThreads: numThreads } : {}),
    });
    reportLoadProgress(stage, 1, 1);
    return session;
  } catch (e) {
    throw new SwitchyardError(
      `ONNX Runtime could not load the ${what} graph built for ${dir}: ${(e as Error).message}`,
      'model_load',
    );
  }
}

/** A webgpu session for a cached graph (validation off, as the decoder's). */
export async function openWebGpuSession(graph: CachedGraph, what: string): Promise<ort.InferenceSession> {
  const stage = `opening the ${what} session`;
  reportLoadProgress(stage, 0, 1);
  try {
    const session = await createSession(graph, {
      executionProviders: [
        { name: 'webgpu', validationMode: 'disabled' } as ort.InferenceSession.ExecutionProviderConfig,
      ],
      graphOptimizationLevel: 'all',
    });
    reportLoadProgress(stage, 1, 1);
    return session;
  } catch (e) {
    throw new SwitchyardError(
      `the webgpu provider could not load the ${what} graph: ${(e as Error).message}`,
      'model_load',
    );
  }
}
