/** One step of model loading: `done` of `total` units of `stage` (weights, or 0/1 for one step). */
export interface LoadProgress {
  stage: string;
  done: number;
  total: number;
}

const listeners = new Set<(p: LoadProgress) => void>();

/**
 * Subscribes to loading progress (graph builds converting or quantizing weights, ONNX Runtime
 * sessions opening); returns the unsubscribe function. Mutates the process-wide listener set:
 * every engine loading in this process reports to every listener.
 */
export function onLoadProgress(listener: (p: LoadProgress) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Reports progress to the listeners (cheap when there are none). */
export function reportLoadProgress(stage: string, done: number, total: number): void {
  for (const l of listeners) l({ stage, done, total });
}
