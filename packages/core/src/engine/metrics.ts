import type { KvCacheManager } from '../kv-cache.js';
import type { Scheduler } from '../scheduler.js';
import type { EngineStats } from './engine-options.js';
import type { ImageEmbeddingCache } from './image-cache.js';
import type { VisionBatchStats } from './vision-batcher.js';

/** A fixed-bucket histogram (Prometheus style) that also keeps count and sum. */
export class Histogram {
  readonly counts: number[];
  count = 0;
  sum = 0;

  constructor(readonly buckets: readonly number[]) {
    this.counts = new Array(buckets.length).fill(0);
  }

  observe(v: number): void {
    this.count++;
    this.sum += v;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) this.counts[i]++;
  }

  get mean(): number {
    return this.count ? this.sum / this.count : 0;
  }
}

const LATENCY_S = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80,
];

/** Engine-wide counters and latency histograms (seconds), read by the server's /metrics. */
export class EngineMetrics {
  readonly ttft = new Histogram(LATENCY_S);
  readonly interTokenLatency = new Histogram(LATENCY_S);
  readonly e2eLatency = new Histogram(LATENCY_S);
  readonly queueTime = new Histogram(LATENCY_S);
  numRequestsFinished = 0;
  numRequestsFailed = 0;
  /** Requests stopped before they finished (client gone, `abort`, a drain); not in the histograms. */
  numRequestsAborted = 0;
  numPromptTokens = 0;
  numGenerationTokens = 0;
  numSteps = 0;
  /** Highest fraction of KV blocks referenced by running sequences, over all steps. */
  kvPeakUsage = 0;
}

/** A snapshot of an engine's gauges and counters from its parts. */
export function engineStats(
  scheduler: Scheduler,
  kv: KvCacheManager,
  m: EngineMetrics,
  imageCache: ImageEmbeddingCache,
  numPreparing = 0,
  vision?: VisionBatchStats,
): EngineStats {
  const usage = kv.usage();
  const prefix = kv.prefixStats();
  return {
    numRunning: scheduler.numRunning(),
    numWaiting: scheduler.numWaiting(),
    numPreparing,
    kvUsage: usage.numUsedBlocks / usage.numBlocks,
    kvPeakUsage: m.kvPeakUsage,
    kvCachedBlocks: usage.numCachedBlocks,
    prefixQueries: prefix.queries,
    prefixHits: prefix.hits,
    prefixHitRate: prefix.queries ? prefix.hits / prefix.queries : 0,
    numPreemptions: scheduler.numPreemptions,
    numRequestsFinished: m.numRequestsFinished,
    numRequestsFailed: m.numRequestsFailed,
    numRequestsAborted: m.numRequestsAborted,
    numPromptTokens: m.numPromptTokens,
    numGenerationTokens: m.numGenerationTokens,
    numSteps: m.numSteps,
    imageCacheQueries: imageCache.hits + imageCache.misses,
    imageCacheHits: imageCache.hits,
    visionRuns: vision?.runs ?? 0,
    visionImages: vision?.images ?? 0,
    visionTiles: vision?.tiles ?? 0,
    visionMaxBatchTiles: vision?.maxBatchTiles ?? 0,
  };
}
