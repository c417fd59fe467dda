import type { ImageLimits } from '../image/image-pipeline.js';
import type { GenerationConfigSource } from './generation-defaults.js';

export interface EngineOptions {
  /** A Hugging Face checkpoint folder. */
  model: string;
  /** Registered scheduler name (default 'continuous'). */
  scheduler?: string;
  /** Registered KV cache manager name (default 'paged'). */
  attention?: string;
  /** Registered backend name (default 'cpu'; core ships 'cpu' and 'webgpu'). */
  device?: string;
  /** One of the backend's dtypes (default: its first). */
  dtype?: string;
  /** Queue policy of the scheduler: 'fcfs', 'lpm', 'priority' (default 'fcfs'). */
  policy?: string;
  blockSize?: number;
  /** Tokens the KV pool holds (default: the backend's choice; cpu: 512 MiB worth, at most 32768). */
  kvCacheTokens?: number;
  /**
   * Fraction of device memory for weights + KV (vLLM's gpu_memory_utilization); sizes the KV pool
   * when `kvCacheTokens` is not given. Device backends only (webgpu); the cpu backend refuses it.
   */
  memoryUtilization?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  /** Longest prompt + output (default: the model's max positions, at most the pool). */
  maxModelLen?: number;
  enablePrefixCaching?: boolean;
  enableChunkedPrefill?: boolean;
  numThreads?: number;
  /** 'int4': weight-only int4 for the linear layers, where the backend lists it (webgpu). */
  quantization?: 'none' | 'int4';
  /** Backend-specific settings, passed to the backend untouched (webgpu: `WebGpuTuning`). */
  settings?: Record<string, unknown>;
  /** Capacity of the image-embedding cache in MiB (default 256). */
  imageCacheMb?: number;
  /** At most this many images in the image-embedding cache (LightLLM's cache_capacity; default no cap). */
  imageCacheEntries?: number;
  /**
   * Tiles (images, or an image's tiles) one vision tower run takes at most: images of concurrent
   * requests that arrive while the tower runs are encoded together in its next run (LightLLM's
   * visual_infer_batch_size). Default 16; 0 or 1: each image runs alone, at once.
   */
  visionBatchSize?: number;
  /** Where omitted sampling settings come from: 'auto' (generation_config.json), 'vllm', 'none', a folder. */
  generationConfig?: GenerationConfigSource;
  /** A folder with the tokenizer to use instead of the checkpoint's (vLLM's --tokenizer). */
  tokenizer?: string;
  /** A Jinja chat template (source text) to use instead of the checkpoint's. */
  chatTemplate?: string;
  /**
   * Budgets of image work (pixels per request, pixels decoded at once) and the worker threads that
   * decode and preprocess images (see `ImageLimits`; by default images are processed on this thread).
   */
  images?: ImageLimits;
  /**
   * Where the backend's executor runs (`IsolatedExecutor`): 'none' (this thread: the fastest, but
   * a long step holds up HTTP and streams), 'thread' (a worker thread: this thread goes on
   * answering during steps), 'process' (a child process: a native crash in ONNX Runtime or a GPU
   * provider fails that step's requests, and the executor is restarted; decision 0015). Default
   * 'none', or 'thread' when `executorThread` is given.
   */
  executorIsolation?: 'none' | 'thread' | 'process';
  /**
   * Settings of the executor's thread or process (named for the thread it first described; alone
   * it means `executorIsolation: 'thread'`). `modules` export `register(container)` or
   * `registerBuiltins(container)` and add the model's architecture (and a user backend) there;
   * `createEngine` of @switchyard/server names the built-ins when none are given. A thread or
   * process that dies is restarted up to `maxRestarts` times (default 3) within `restartWindowMs`
   * (default 300 000); one more death in the window and every request fails saying so.
   */
  executorThread?: { modules?: string[]; maxRestarts?: number; restartWindowMs?: number };
  /** Run the KV manager's integrity check after every step (tests). */
  checkIntegrity?: boolean;
}

export interface EngineInfo {
  model: string;
  architecture: string;
  scheduler: string;
  attention: string;
  device: string;
  dtype: string;
  blockSize: number;
  numBlocks: number;
  kvCacheTokens: number;
  /** 2 × layers × kv heads × head dim × bytes per element. */
  kvBytesPerToken: number;
  maxModelLen: number;
  vocabSize: number;
}

export interface EngineStats {
  numRunning: number;
  numWaiting: number;
  /** Requests being prepared (tokenized, images decoded and encoded), not yet queued. */
  numPreparing: number;
  /** Fraction of KV blocks referenced by live sequences now, and at most so far. */
  kvUsage: number;
  kvPeakUsage: number;
  /** Unreferenced blocks kept for prefix reuse. */
  kvCachedBlocks: number;
  prefixQueries: number;
  prefixHits: number;
  /** Prompt tokens served from the prefix cache / prompt tokens looked up. */
  prefixHitRate: number;
  numPreemptions: number;
  numRequestsFinished: number;
  numRequestsFailed: number;
  /** Requests stopped before they finished (client gone, `abort`, a drain). */
  numRequestsAborted: number;
  numPromptTokens: number;
  numGenerationTokens: number;
  numSteps: number;
  imageCacheQueries: number;
  imageCacheHits: number;
  /** Runs of the vision tower, the images and tiles they encoded, and the most tiles in one run. */
  visionRuns: number;
  visionImages: number;
  visionTiles: number;
  visionMaxBatchTiles: number;
}
