import type { Engine } from '@switchyard/core';

/** The periodic engine line, as vLLM's: throughput since the last line, queue, KV and prefix cache. */
export function statsLine(
  now: ReturnType<Engine['stats']>,
  last: { prompt: number; generation: number; queries: number; hits: number },
  seconds: number,
): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const queries = now.prefixQueries - last.queries;
  const hitRate = queries > 0 ? (now.prefixHits - last.hits) / queries : 0;
  return (
    `Avg prompt throughput: ${((now.numPromptTokens - last.prompt) / seconds).toFixed(1)} tokens/s, ` +
    `Avg generation throughput: ${((now.numGenerationTokens - last.generation) / seconds).toFixed(1)} tokens/s, ` +
    `Running: ${now.numRunning} reqs, Waiting: ${now.numWaiting} reqs, ` +
    `KV cache usage: ${pct(now.kvUsage)}, Prefix cache hit rate: ${pct(hitRate)}`
  );
}

/**
 * Logs `statsLine` every `intervalS` seconds while the engine has work or had some since the last
 * line (an idle server stays quiet, as vLLM's does); returns the stop function.
 */
export function startStatsLogger(engine: Engine, log: (line: string) => void, intervalS: number): () => void {
  const snapshot = () => {
    const s = engine.stats();
    return {
      prompt: s.numPromptTokens,
      generation: s.numGenerationTokens,
      queries: s.prefixQueries,
      hits: s.prefixHits,
    };
  };
  let last = snapshot();
  let lastAt = performance.now();
  const timer = setInterval(() => {
    const now = engine.stats();
    const at = performance.now();
    const busy =
      now.numRunning + now.numWaiting > 0 ||
      now.numPromptTokens !== last.prompt ||
      now.numGenerationTokens !== last.generation;
    if (busy) log(statsLine(now, last, (at - lastAt) / 1000));
    last = snapshot();
    lastAt = at;
  }, intervalS * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
