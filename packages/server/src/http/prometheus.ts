import type { Engine, Histogram } from '@switchyard/core';

/** The engine's metrics in the Prometheus text format (names after vLLM's, prefixed `switchyard:`). */
export function prometheusText(engine: Engine, modelName: string): string {
  const s = engine.stats();
  const m = engine.metrics;
  const labels = `model_name="${modelName.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
  const out: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, value: number) => {
    out.push(
      `# HELP switchyard:${name} ${help}`,
      `# TYPE switchyard:${name} ${type}`,
      `switchyard:${name}{${labels}} ${value}`,
    );
  };
  const histogram = (name: string, help: string, h: Histogram) => {
    out.push(`# HELP switchyard:${name} ${help}`, `# TYPE switchyard:${name} histogram`);
    for (const [i, le] of h.buckets.entries())
      out.push(`switchyard:${name}_bucket{${labels},le="${le}"} ${h.counts[i]}`);
    out.push(`switchyard:${name}_bucket{${labels},le="+Inf"} ${h.count}`);
    out.push(`switchyard:${name}_sum{${labels}} ${h.sum}`, `switchyard:${name}_count{${labels}} ${h.count}`);
  };
  metric('num_requests_running', 'gauge', 'Sequences in the running batch.', s.numRunning);
  metric('num_requests_waiting', 'gauge', 'Sequences waiting to be scheduled.', s.numWaiting);
  metric(
    'num_requests_preparing',
    'gauge',
    'Requests being prepared (tokenized, images decoded), not yet queued.',
    s.numPreparing,
  );
  metric('kv_cache_usage_perc', 'gauge', 'Fraction of KV blocks held by live sequences.', s.kvUsage);
  metric(
    'kv_cache_used_blocks',
    'gauge',
    'KV blocks held by live sequences.',
    Math.round(s.kvUsage * engine.info.numBlocks),
  );
  metric('kv_cache_total_blocks', 'gauge', 'KV blocks in the pool.', engine.info.numBlocks);
  metric(
    'prefix_cache_queries_total',
    'counter',
    'Prompt tokens looked up in the prefix cache.',
    s.prefixQueries,
  );
  metric('prefix_cache_hits_total', 'counter', 'Prompt tokens served from the prefix cache.', s.prefixHits);
  metric(
    'image_cache_queries_total',
    'counter',
    'Images looked up in the image-embedding cache.',
    s.imageCacheQueries,
  );
  metric(
    'image_cache_hits_total',
    'counter',
    'Images served from the image-embedding cache.',
    s.imageCacheHits,
  );
  metric('num_preemptions_total', 'counter', 'Sequences preempted (recomputed later).', s.numPreemptions);
  metric('prompt_tokens_total', 'counter', 'Prompt tokens of finished requests.', s.numPromptTokens);
  metric(
    'generation_tokens_total',
    'counter',
    'Generated tokens of finished requests.',
    s.numGenerationTokens,
  );
  metric(
    'request_success_total',
    'counter',
    'Requests finished (client aborts not counted).',
    s.numRequestsFinished,
  );
  metric(
    'request_aborted_total',
    'counter',
    'Requests stopped before they finished (client gone, drain).',
    s.numRequestsAborted,
  );
  metric('request_failure_total', 'counter', 'Requests that failed.', s.numRequestsFailed);
  histogram('time_to_first_token_seconds', 'Time to first token.', m.ttft);
  histogram('inter_token_latency_seconds', 'Time between consecutive output tokens.', m.interTokenLatency);
  histogram('e2e_request_latency_seconds', 'Arrival to finish.', m.e2eLatency);
  histogram('request_queue_time_seconds', 'Arrival to first scheduled.', m.queueTime);
  return `${out.join('\n')}\n`;
}
