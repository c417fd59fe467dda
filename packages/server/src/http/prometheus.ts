import type { Engine, GenerateRequest, GenerateResult } from '@switchyard/core';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** vLLM's bucket layouts. */
const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640,
  2560,
];
const TPOT_BUCKETS = [
  0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80,
];
const LATENCY_BUCKETS = [
  0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680,
];

/** 1, 2, 5, 10, 20, 50, … up to `max` (vLLM's build_1_2_5_buckets, for token counts). */
export function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let exp = 0; ; exp++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** exp;
      if (v > max) return out;
      out.push(v);
    }
  }
}

/**
 * The server's Prometheus metrics through prom-client: vLLM's metric set under `switchyard:`
 * (engine gauges and counters read at scrape time; per-request histograms and
 * `request_success_total{finished_reason}` observed as requests finish), plus the process and
 * Node.js metrics of `collectDefaultMetrics`. One registry per server.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly labels: { model_name: string };
  private readonly success: Counter<'model_name' | 'finished_reason'>;
  private readonly h: Record<string, Histogram<'model_name'>> = {};

  constructor(
    private readonly engine: Engine,
    modelName: string,
  ) {
    const registers = [this.registry];
    const labelNames = ['model_name'] as const;
    const labels = { model_name: modelName };
    this.labels = labels;
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name: `switchyard:${name}`,
        help,
        labelNames,
        registers,
        collect() {
          this.set(labels, read());
        },
      });
    /** A counter mirroring one of the engine's running totals. */
    const counter = (name: string, help: string, read: () => number) => {
      let last = 0;
      return new Counter({
        name: `switchyard:${name}`,
        help,
        labelNames,
        registers,
        collect() {
          const now = read();
          // inc by 0 too, so a counter still at zero is exported.
          this.inc(labels, Math.max(0, now - last));
          last = Math.max(now, last);
        },
      });
    };
    const s = () => engine.stats();
    gauge('num_requests_running', 'Sequences in the running batch.', () => s().numRunning);
    gauge('num_requests_waiting', 'Sequences waiting to be scheduled.', () => s().numWaiting);
    gauge(
      'num_requests_preparing',
      'Requests being prepared (tokenized, images decoded), not yet queued.',
      () => s().numPreparing,
    );
    gauge(
      'kv_cache_usage_perc',
      'Fraction of KV blocks held by live sequences (1 = full).',
      () => s().kvUsage,
    );
    gauge('kv_cache_used_blocks', 'KV blocks held by live sequences.', () =>
      Math.round(s().kvUsage * engine.info.numBlocks),
    );
    gauge('kv_cache_total_blocks', 'KV blocks in the pool.', () => engine.info.numBlocks);
    new Gauge({
      name: 'switchyard:cache_config_info',
      help: 'The KV cache configuration (value 1).',
      labelNames: ['model_name', 'block_size', 'num_gpu_blocks', 'attention', 'scheduler', 'device'],
      registers,
      collect() {
        const i = engine.info;
        this.set(
          {
            ...labels,
            block_size: String(i.blockSize),
            num_gpu_blocks: String(i.numBlocks),
            attention: i.attention,
            scheduler: i.scheduler,
            device: i.device,
          },
          1,
        );
      },
    });
    counter(
      'prefix_cache_queries_total',
      'Prompt tokens looked up in the prefix cache.',
      () => s().prefixQueries,
    );
    counter('prefix_cache_hits_total', 'Prompt tokens served from the prefix cache.', () => s().prefixHits);
    counter(
      'image_cache_queries_total',
      'Images looked up in the image-embedding cache.',
      () => s().imageCacheQueries,
    );
    counter(
      'image_cache_hits_total',
      'Images served from the image-embedding cache.',
      () => s().imageCacheHits,
    );
    counter(
      'vision_encoder_runs_total',
      'Runs of the vision tower (a run encodes a batch).',
      () => s().visionRuns,
    );
    counter(
      'vision_encoder_images_total',
      'Images the vision tower encoded (--vision-batch-size batches those of concurrent requests).',
      () => s().visionImages,
    );
    counter(
      'vision_encoder_tiles_total',
      'Image tiles (rows) the vision tower encoded; tiles / runs is the mean batch.',
      () => s().visionTiles,
    );
    counter('num_preemptions_total', 'Sequences preempted (recomputed later).', () => s().numPreemptions);
    counter(
      'executor_restarts_total',
      "Times the executor's thread or process was started again after it died (decision 0015).",
      () => engine.health().numRestarts,
    );
    counter('prompt_tokens_total', 'Prompt tokens of finished requests.', () => s().numPromptTokens);
    counter(
      'generation_tokens_total',
      'Generated tokens of finished requests.',
      () => s().numGenerationTokens,
    );
    counter('request_failure_total', 'Requests that failed.', () => s().numRequestsFailed);
    counter(
      'request_aborted_total',
      'Requests stopped before they finished (client gone, drain, timeout).',
      () => s().numRequestsAborted,
    );
    this.success = new Counter({
      name: 'switchyard:request_success_total',
      help: 'Finished completions, by finish reason (stop, length; aborts are request_aborted_total).',
      labelNames: ['model_name', 'finished_reason'],
      registers,
    });
    // Exported at zero from the start, as vLLM does, so a scrape always finds them.
    for (const finished_reason of ['stop', 'length']) this.success.inc({ ...labels, finished_reason }, 0);
    const histogram = (name: string, help: string, buckets: number[]) => {
      this.h[name] = new Histogram({ name: `switchyard:${name}`, help, labelNames, buckets, registers });
    };
    const tokens = buckets125(engine.info.maxModelLen);
    histogram('time_to_first_token_seconds', 'Arrival to first token.', TTFT_BUCKETS);
    histogram('inter_token_latency_seconds', 'Time between consecutive output tokens.', TPOT_BUCKETS);
    histogram('time_per_output_token_seconds', 'Decode time per output token after the first.', TPOT_BUCKETS);
    histogram('e2e_request_latency_seconds', 'Arrival to finish.', LATENCY_BUCKETS);
    histogram('request_queue_time_seconds', 'Arrival to first scheduled step.', LATENCY_BUCKETS);
    histogram('request_inference_time_seconds', 'First scheduled step to finish.', LATENCY_BUCKETS);
    histogram('request_prefill_time_seconds', 'First scheduled step to first token.', LATENCY_BUCKETS);
    histogram('request_decode_time_seconds', 'First token to finish.', LATENCY_BUCKETS);
    histogram('request_prompt_tokens', 'Prompt tokens per request.', tokens);
    histogram('request_generation_tokens', 'Generated tokens per request.', tokens);
    histogram('request_params_max_tokens', 'max_tokens per request (the default: the context left).', tokens);
    histogram('request_params_n', 'Completions asked per request (n).', [1, 2, 5, 10, 20]);
    collectDefaultMetrics({ register: this.registry });
  }

  /** Records a finished request (one result of the batch it came in). */
  observe(request: GenerateRequest, r: GenerateResult): void {
    const l = this.labels;
    const m = r.metrics;
    const obs = (name: string, v: number) => this.h[name].observe(l, v);
    for (const o of r.outputs)
      if (o.finishReason !== 'abort') this.success.inc({ ...l, finished_reason: o.finishReason }, 1);
    obs('time_to_first_token_seconds', m.ttftMs / 1000);
    for (const gap of m.itlMs) obs('inter_token_latency_seconds', gap / 1000);
    const generated = r.outputs[0]?.tokenIds.length ?? 0;
    if (generated > 1) obs('time_per_output_token_seconds', (m.e2eMs - m.ttftMs) / 1000 / (generated - 1));
    obs('e2e_request_latency_seconds', m.e2eMs / 1000);
    obs('request_queue_time_seconds', m.queueMs / 1000);
    obs('request_inference_time_seconds', (m.e2eMs - m.queueMs) / 1000);
    obs('request_prefill_time_seconds', (m.ttftMs - m.queueMs) / 1000);
    obs('request_decode_time_seconds', (m.e2eMs - m.ttftMs) / 1000);
    obs('request_prompt_tokens', r.usage.promptTokens);
    obs('request_generation_tokens', r.usage.completionTokens);
    obs(
      'request_params_max_tokens',
      request.sampling?.maxTokens ?? this.engine.info.maxModelLen - r.usage.promptTokens,
    );
    obs('request_params_n', r.outputs.length);
  }

  /** The exposition text. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
