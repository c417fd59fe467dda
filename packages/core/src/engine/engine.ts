import type { DependencyContainer } from 'tsyringe';
import { kvCacheRegistry, modelRegistry, schedulerRegistry } from '../container.js';
import { SwitchyardError } from '../errors.js';
import type { Executor, StepSequence } from '../executor.js';
import { decodeImage, imageHash } from '../image/index.js';
import type { KvCacheManager } from '../kv-cache.js';
import { Checkpoint } from '../loader/checkpoint.js';
import type { ModelSpec } from '../model.js';
import { CpuExecutor } from '../ort/cpu-executor.js';
import { VisionEncoder } from '../ort/vision-encoder.js';
import { WebGpuExecutor, type WebGpuTuning } from '../ort/webgpu-executor.js';
import { IncrementalDetokenizer } from '../sampling/detokenizer.js';
import { Sampler, tokenLogprob } from '../sampling/sampler.js';
import { validateSamplingParams } from '../sampling/validate.js';
import type { SamplingParams } from '../sampling-params.js';
import type { Scheduler, SchedulerOutput } from '../scheduler.js';
import { type MultimodalItem, Sequence, type TokenLogprob } from '../sequence.js';
import { checkRequestKeys } from './check-request-keys.js';
import { type GenerationConfigSource, generationDefaults } from './generation-defaults.js';
import { ImageEmbeddingCache } from './image-cache.js';
import { deviceMemoryBytes, kvTokensForMemoryFraction } from './memory-fraction.js';
import { EngineMetrics } from './metrics.js';
import { collectImages, expandPlaceholders, imageBytes } from './multimodal-input.js';
import type { CompletionOutput, GenerateRequest, GenerateResult, StreamEvent } from './request.js';

export interface EngineOptions {
  /** A Hugging Face checkpoint folder. */
  model: string;
  /** Registered scheduler name (default 'continuous'). */
  scheduler?: string;
  /** Registered KV cache manager name (default 'paged'). */
  attention?: string;
  device?: 'cpu' | 'webgpu';
  dtype?: 'float32' | 'float16';
  /** Queue policy of the scheduler: 'fcfs', 'lpm', 'priority' (default 'fcfs'). */
  policy?: string;
  blockSize?: number;
  /** Tokens the KV pool holds (default: 512 MiB worth, at most 32768). */
  kvCacheTokens?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  /** Longest prompt + output (default: the model's max positions, at most the pool). */
  maxModelLen?: number;
  enablePrefixCaching?: boolean;
  enableChunkedPrefill?: boolean;
  numThreads?: number;
  /** 'int4': weight-only int4 (MatMulNBits, block 32) for the linear layers; webgpu only. */
  quantization?: 'none' | 'int4';
  /** Settings of the webgpu provider (see `WebGpuTuning`). */
  webgpu?: WebGpuTuning;
  /** Capacity of the image-embedding cache in MiB (default 256). */
  imageCacheMb?: number;
  /**
   * Share of the device's memory for weights + KV (vLLM's gpu_memory_utilization); sizes the KV
   * pool when `kvCacheTokens` is not given. webgpu only: the cpu backend has no device pool.
   */
  gpuMemoryUtilization?: number;
  /** The device's memory in bytes for `gpuMemoryUtilization` (default: from nvidia-smi). */
  deviceMemoryBytes?: number;
  /** A folder with the tokenizer to use instead of the checkpoint's (vLLM's --tokenizer). */
  tokenizer?: string;
  /** A Jinja chat template (source text) to use instead of the checkpoint's. */
  chatTemplate?: string;
  /** At most this many images in the image-embedding cache (LightLLM's cache_capacity; default no cap). */
  imageCacheEntries?: number;
  /** Where omitted sampling settings come from: 'auto' (generation_config.json), 'vllm', 'none', a folder. */
  generationConfig?: GenerationConfigSource;
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
  numPromptTokens: number;
  numGenerationTokens: number;
  numSteps: number;
  imageCacheQueries: number;
  imageCacheHits: number;
}

interface RequestState {
  id: string;
  promptIds: number[];
  seqs: Sequence[];
  detoks: IncrementalDetokenizer[];
  /** Sequences of an `n > 1` request waiting for the first one's prompt KV (prefix-cache reuse). */
  pending: Sequence[];
  listeners: ((e: StreamEvent) => void)[];
  itlMs: number[];
  /** Prompt logprobs as prefill computes them (index 0 stays null); only with `promptLogprobs`. */
  promptLogprobs?: (TokenLogprob | null)[];
  done: Promise<GenerateResult>;
  resolve: (r: GenerateResult) => void;
  reject: (e: Error) => void;
  arrival: number;
}

/** Default KV pool sizes: a modest share of host memory on CPU, a large pool on a GPU. */
const DEFAULT_KV_BYTES = {
  cpu: { bytes: 512 * 1024 * 1024, maxTokens: 32768 },
  webgpu: { bytes: 16 * 1024 * 1024 * 1024, maxTokens: 262144 },
};
let nextRequestNum = 0;

/**
 * The engine: one loop of schedule → run → sample → update over the parts the container names.
 * Requests enter through `generate` (offline batch) or `stream` (per request, abortable).
 */
export class Engine {
  readonly metrics = new EngineMetrics();
  private readonly sampler: Sampler;
  private readonly requests = new Map<string, RequestState>();
  private readonly bySeq = new Map<Sequence, RequestState>();
  private loopRunning = false;
  private closed = false;

  private constructor(
    readonly info: EngineInfo,
    readonly checkpoint: Checkpoint,
    readonly spec: ModelSpec,
    private readonly executor: Executor,
    readonly scheduler: Scheduler,
    readonly kv: KvCacheManager,
    private readonly options: EngineOptions,
    private readonly vision?: VisionEncoder,
  ) {
    this.imageCache = new ImageEmbeddingCache(
      (options.imageCacheMb ?? 256) * 1024 * 1024,
      options.imageCacheEntries,
    );
    this.sampler = new Sampler({ eosTokenIds: checkpoint.eosTokenIds });
    this.samplingDefaults = generationDefaults(options.generationConfig, checkpoint);
  }

  /** What a request's omitted sampling settings become (see `GenerationConfigSource`). */
  readonly samplingDefaults: Partial<SamplingParams>;

  /** Image embeddings by content hash; its hit/miss counters feed the metrics. */
  readonly imageCache: ImageEmbeddingCache;

  static async create(options: EngineOptions, container: DependencyContainer): Promise<Engine> {
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
    const checkpoint = Checkpoint.open(options.model, {
      tokenizer: options.tokenizer,
      chatTemplate: options.chatTemplate,
    });
    const spec = modelRegistry(container).get(checkpoint.architecture).describe(checkpoint);
    const d = spec.decoder;

    const blockSize = options.blockSize ?? 16;
    const kvBytesPerToken = 2 * d.numLayers * d.numKvHeads * d.headDim * (dtype === 'float16' ? 2 : 4);
    const budget = DEFAULT_KV_BYTES[device as keyof typeof DEFAULT_KV_BYTES];
    let kvTokens =
      options.kvCacheTokens ?? Math.min(budget.maxTokens, Math.floor(budget.bytes / kvBytesPerToken));
    if (options.gpuMemoryUtilization !== undefined && options.kvCacheTokens === undefined) {
      if (device !== 'webgpu') {
        throw new SwitchyardError(
          'a GPU memory fraction needs a device pool, and the cpu backend has none; size the KV cache with --kv-cache-tokens N (or use --device webgpu)',
          'invalid_request',
          'gpuMemoryUtilization',
        );
      }
      const totalBytes = options.deviceMemoryBytes ?? deviceMemoryBytes();
      if (totalBytes === undefined) {
        throw new SwitchyardError(
          "the GPU's memory size is unknown (no nvidia-smi); size the KV cache with --kv-cache-tokens N",
          'invalid_request',
          'gpuMemoryUtilization',
        );
      }
      // Weights run in fp16 on webgpu (int4 packs a linear layer's eight per 4 bytes, plus scales).
      let numel = 0;
      for (const t of checkpoint.tensors.values()) numel += t.shape.reduce((a, b) => a * b, 1);
      const weightBytes = numel * (options.quantization === 'int4' ? 0.75 : 2);
      kvTokens = kvTokensForMemoryFraction({
        fraction: options.gpuMemoryUtilization,
        totalBytes,
        weightBytes,
        kvBytesPerToken,
      });
    }
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
    return new Engine(info, checkpoint, spec, executor, scheduler, kv, options, vision);
  }

  get tokenizer() {
    return this.checkpoint.tokenizer;
  }

  /** Runs requests to completion; results in request order. A bad request rejects before any runs. */
  async generate(requests: GenerateRequest[]): Promise<GenerateResult[]> {
    const states = await Promise.all(requests.map((r) => this.prepare(r)));
    for (const s of states) this.enqueue(s);
    return Promise.all(states.map((s) => s.done));
  }

  /** Streams one request's tokens as they come; aborting `signal` stops it and frees its KV. */
  async *stream(request: GenerateRequest, signal?: AbortSignal): AsyncGenerator<StreamEvent> {
    const state = await this.prepare(request);
    const queue: StreamEvent[] = [];
    let wake: (() => void) | undefined;
    state.listeners.push((e) => {
      queue.push(e);
      wake?.();
    });
    const onAbort = () => this.abort(state.id);
    signal?.addEventListener('abort', onAbort, { once: true });
    let failed: Error | undefined;
    state.done.catch((e) => {
      failed = e;
      wake?.();
    });
    this.enqueue(state);
    try {
      while (true) {
        while (queue.length > 0) {
          const e = queue.shift()!;
          yield e;
          if (e.type === 'done') return;
        }
        if (failed) throw failed;
        await new Promise<void>((r) => {
          wake = r;
        });
        wake = undefined;
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (this.requests.has(state.id)) this.abort(state.id);
    }
  }

  /** Stops a request wherever it is; its result resolves with finish reason 'abort'. */
  abort(requestId: string): boolean {
    return this.stop(requestId);
  }

  /** Ends a request's sequences; resolves its result, or rejects it with `error`. */
  private stop(requestId: string, error?: Error): boolean {
    const state = this.requests.get(requestId);
    if (!state) return false;
    for (const seq of state.pending) {
      seq.status = 'finished';
      seq.finishReason = 'abort';
    }
    state.pending = [];
    for (const seq of state.seqs) if (!seq.isFinished) this.scheduler.abort(seq.id);
    for (const seq of state.seqs) {
      if (!seq.isFinished) {
        seq.status = 'finished';
        seq.finishReason = 'abort';
      }
    }
    this.finishRequest(state, error);
    return true;
  }

  /** A snapshot of the engine's gauges and counters (the latency histograms are in `metrics`). */
  stats(): EngineStats {
    const usage = this.kv.usage();
    const prefix = this.kv.prefixStats();
    const m = this.metrics;
    return {
      numRunning: this.scheduler.numRunning(),
      numWaiting: this.scheduler.numWaiting(),
      kvUsage: usage.numUsedBlocks / usage.numBlocks,
      kvPeakUsage: m.kvPeakUsage,
      kvCachedBlocks: usage.numCachedBlocks,
      prefixQueries: prefix.queries,
      prefixHits: prefix.hits,
      prefixHitRate: prefix.queries ? prefix.hits / prefix.queries : 0,
      numPreemptions: this.scheduler.numPreemptions,
      numRequestsFinished: m.numRequestsFinished,
      numRequestsFailed: m.numRequestsFailed,
      numPromptTokens: m.numPromptTokens,
      numGenerationTokens: m.numGenerationTokens,
      numSteps: m.numSteps,
      imageCacheQueries: this.imageCache.hits + this.imageCache.misses,
      imageCacheHits: this.imageCache.hits,
    };
  }

  numUnfinished(): number {
    return this.requests.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const id of [...this.requests.keys()]) this.abort(id);
    await this.executor.dispose();
    await this.vision?.dispose();
  }

  /**
   * Tokenizes, validates, and encodes the request's images (through the image cache); throws
   * SwitchyardError naming the problem. Enqueues nothing.
   */
  private async prepare(req: GenerateRequest): Promise<RequestState> {
    if (this.closed) throw new SwitchyardError('the engine is closed', 'capacity');
    if (!req || typeof req !== 'object')
      throw new SwitchyardError('a request must be an object', 'invalid_request');
    checkRequestKeys(req);
    const { promptIds, mm } = await this.promptWithImages(req);
    const { vocabSize, maxModelLen } = this.info;
    if (promptIds.length === 0) throw new SwitchyardError('the prompt is empty', 'invalid_request', 'prompt');
    const bad = promptIds.find((t) => !Number.isInteger(t) || t < 0 || t >= vocabSize);
    if (bad !== undefined) {
      throw new SwitchyardError(
        `prompt token id ${bad} is outside the vocabulary (0..${vocabSize - 1})`,
        'invalid_request',
        'prompt',
      );
    }
    if (promptIds.length >= maxModelLen) {
      throw new SwitchyardError(
        `the prompt has ${promptIds.length} tokens but the context holds ${maxModelLen} (prompt plus at least one new token); shorten the prompt`,
        'invalid_request',
        'prompt',
      );
    }
    const given = Object.fromEntries(
      Object.entries(req.sampling ?? {}).filter(([, v]) => v !== undefined && v !== null),
    );
    const merged: Record<string, unknown> = { ...this.samplingDefaults, ...given };
    // A default max_tokens (generation_config's max_new_tokens) is capped by the room left, as in vLLM.
    if (given.maxTokens === undefined && this.samplingDefaults.maxTokens !== undefined)
      merged.maxTokens = Math.max(
        1,
        Math.min(this.samplingDefaults.maxTokens, maxModelLen - promptIds.length),
      );
    const sampling = validateSamplingParams(merged, {
      maxModelLen,
      promptLen: promptIds.length,
      vocabSize,
    });
    const id = req.id ?? `req-${nextRequestNum++}`;
    if (this.requests.has(id))
      throw new SwitchyardError(`request id ${id} is already in use`, 'invalid_request', 'id');
    const arrival = performance.now();
    const seqs = Array.from({ length: sampling.n }, (_, i) => {
      const seed = sampling.seed === undefined ? undefined : sampling.seed + i;
      return new Sequence(
        sampling.n === 1 ? id : `${id}#${i}`,
        promptIds,
        { ...sampling, seed },
        {
          priority: req.priority,
          // Prompt logprobs need every prompt position computed: a salt of its own skips the prefix cache.
          cacheSalt:
            sampling.promptLogprobs === undefined
              ? req.cacheSalt
              : `${req.cacheSalt ?? ''}\u0000prompt-logprobs:${id}`,
          arrivalTime: arrival,
          mm,
        },
      );
    });
    const decode = (ids: number[]) => this.tokenizer.decode(ids, true);
    let resolve!: (r: GenerateResult) => void;
    let reject!: (e: Error) => void;
    const done = new Promise<GenerateResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    done.catch(() => {});
    return {
      id,
      promptIds,
      seqs,
      detoks: seqs.map(
        () =>
          new IncrementalDetokenizer(decode, promptIds, {
            stop: sampling.stop,
            minTokens: sampling.minTokens,
          }),
      ),
      pending: seqs.slice(1),
      listeners: [],
      itlMs: [],
      promptLogprobs: sampling.promptLogprobs === undefined ? undefined : promptIds.map(() => null),
      done,
      resolve,
      reject,
      arrival,
    };
  }

  /** Prompt ids with image placeholders expanded, and the images' places and embeddings. */
  private async promptWithImages(
    req: GenerateRequest,
  ): Promise<{ promptIds: number[]; mm: MultimodalItem[] }> {
    if (req.images !== undefined && !Array.isArray(req.images)) {
      throw new SwitchyardError('images must be an array', 'invalid_request', 'image');
    }
    const inputs = collectImages(req.messages, req.images);
    const spec = this.spec.multimodal;
    if (inputs.length === 0) return { promptIds: this.promptIds(req, spec?.addSpecialTokens), mm: [] };
    if (!spec || !this.vision) {
      throw new SwitchyardError(
        `the model ${this.info.architecture} does not accept images`,
        'invalid_request',
        'image',
      );
    }
    const vision = this.vision;
    const decoded = await Promise.all(
      inputs.map(async (input) => {
        const bytes = imageBytes(input);
        const processed = spec.process(await decodeImage(bytes));
        return { hash: imageHash(bytes), processed };
      }),
    );
    const { ids, places } = expandPlaceholders(
      this.promptIds(req, spec.addSpecialTokens),
      decoded.map((d) => d.processed),
      spec,
    );
    const mm = await Promise.all(
      decoded.map(async ({ hash, processed }, i) => {
        const embeddings = await this.imageCache.get(hash, async () => {
          const out = await vision.encode(processed.pixelValues, processed.shape);
          return spec.arrange(out.data, out.shape, processed);
        });
        return { hash, ...places[i], embeddings };
      }),
    );
    return { promptIds: ids, mm };
  }

  private promptIds(req: GenerateRequest, chatSpecialTokens = false): number[] {
    const given = [req.prompt, req.promptIds, req.messages].filter((x) => x !== undefined).length;
    if (given !== 1) {
      throw new SwitchyardError(
        'give exactly one of prompt, prompt token ids or messages',
        'invalid_request',
        'prompt',
      );
    }
    if (req.promptIds) {
      if (!Array.isArray(req.promptIds))
        throw new SwitchyardError(
          'prompt token ids must be an array of integers',
          'invalid_request',
          'prompt',
        );
      return [...req.promptIds];
    }
    if (req.messages) {
      const template = this.checkpoint.chatTemplate;
      if (!template)
        throw new SwitchyardError(
          'this model has no chat template; send a raw prompt instead',
          'invalid_request',
          'messages',
        );
      const mm = this.spec.multimodal;
      // `image_token` lets a template given at launch (--chat-template) place the model's image mark.
      const extra = mm ? { image_token: this.tokenizer.idToToken(mm.placeholderTokenId) } : {};
      return this.tokenizer.encode(template.render(req.messages, { extra }), chatSpecialTokens);
    }
    if (typeof req.prompt !== 'string')
      throw new SwitchyardError('prompt must be a string', 'invalid_request', 'prompt');
    return this.tokenizer.encode(req.prompt, true);
  }

  private enqueue(state: RequestState): void {
    this.requests.set(state.id, state);
    for (const seq of state.seqs) this.bySeq.set(seq, state);
    this.scheduler.add(state.seqs[0]);
    void this.loop();
  }

  private async loop(): Promise<void> {
    if (this.loopRunning) return;
    this.loopRunning = true;
    try {
      while (this.scheduler.hasUnfinished()) {
        try {
          await this.step();
        } catch (e) {
          // A broken invariant is a bug: end what is in flight with its message rather than hang.
          for (const state of [...this.requests.values()]) {
            this.stop(
              state.id,
              new SwitchyardError(`engine step failed: ${(e as Error).message}`, 'internal'),
            );
          }
        }
        // Let I/O (new requests, aborts, clients reading streams) in between steps.
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.loopRunning = false;
    }
  }

  /** One engine step. Public for tests and tools that drive the engine by hand. */
  async step(): Promise<void> {
    const out = this.scheduler.schedule();
    if (out.scheduled.length === 0) {
      this.failStuck();
      return;
    }
    const now = performance.now();
    const batch: StepSequence[] = out.scheduled.map(({ seq, numNewTokens }) => {
      if (seq.firstScheduledTime === undefined) {
        seq.firstScheduledTime = now;
        seq.numCachedTokens = seq.numComputedTokens;
      }
      const start = seq.numComputedTokens;
      const tokenIds = new Array<number>(numNewTokens);
      for (let i = 0; i < numNewTokens; i++) tokenIds[i] = seq.tokenAt(start + i);
      return {
        tokenIds,
        start,
        blockTable: this.kv.blockTable(seq),
        sample: start + numNewTokens === seq.length,
        allLogits: start < seq.promptIds.length && this.bySeq.get(seq)?.promptLogprobs !== undefined,
        mm: seq.mm,
      };
    });
    // Greedy rows need only their argmax; a provider that picks it on the device saves the read-back.
    const greedy =
      this.executor.runGreedy !== undefined &&
      out.scheduled.every(
        ({ seq }, i) => !batch[i].allLogits && (!batch[i].sample || Sampler.isPlainGreedy(seq.sampling)),
      );
    let logits: Float32Array | undefined;
    let tokens: Int32Array | undefined;
    try {
      if (greedy) tokens = await this.executor.runGreedy!(batch);
      else logits = await this.executor.run(batch);
    } catch (e) {
      this.failBatch(out, e as Error);
      return;
    }
    this.metrics.numSteps++;
    const V = this.info.vocabSize;
    const touched = new Set<RequestState>();
    let row = 0;
    out.scheduled.forEach(({ seq }, i) => {
      const b = batch[i];
      let r: number;
      if (b.allLogits) {
        this.recordPromptLogprobs(seq, b, logits!, row);
        row += b.tokenIds.length;
        if (!b.sample) return;
        r = row - 1;
      } else {
        if (!b.sample) return;
        r = row++;
      }
      // A request aborted while the step ran is already finished; its row is dropped.
      if (seq.isFinished) return;
      if (tokens) this.appendToken(seq, tokens[r]);
      else {
        const { token, logprob } = this.sampler.sample(logits!.subarray(r * V, (r + 1) * V), seq);
        this.appendToken(seq, token, logprob);
      }
      touched.add(this.bySeq.get(seq)!);
    });
    const usage = this.kv.usage();
    this.metrics.kvPeakUsage = Math.max(this.metrics.kvPeakUsage, usage.numUsedBlocks / usage.numBlocks);
    this.scheduler.update(out);
    if (this.options.checkIntegrity) this.kv.checkIntegrity();
    for (const state of touched) this.afterStep(state);
  }

  /** Prompt logprobs from a prefill chunk's rows: the row at position q scores prompt token q + 1. */
  private recordPromptLogprobs(seq: Sequence, b: StepSequence, logits: Float32Array, row: number): void {
    const state = this.bySeq.get(seq);
    const out = state?.promptLogprobs;
    if (!out || seq.isFinished) return;
    const V = this.info.vocabSize;
    const prompt = seq.promptIds;
    for (let k = 0; k < b.tokenIds.length; k++) {
      const q = b.start + k;
      if (q + 1 >= prompt.length) break;
      const rowLogits = logits.subarray((row + k) * V, (row + k + 1) * V);
      out[q + 1] = tokenLogprob(rowLogits, prompt[q + 1], seq.sampling.promptLogprobs ?? 0);
    }
  }

  private appendToken(seq: Sequence, token: number, logprob?: TokenLogprob): void {
    const now = performance.now();
    const state = this.bySeq.get(seq)!;
    const sp = seq.sampling;
    seq.outputIds.push(token);
    if (logprob) seq.outputLogprobs.push(logprob);
    if (seq.lastTokenTime !== undefined) {
      this.metrics.interTokenLatency.observe((now - seq.lastTokenTime) / 1000);
      if (seq === state.seqs[0]) state.itlMs.push(now - seq.lastTokenTime);
    }
    seq.firstTokenTime ??= now;
    seq.lastTokenTime = now;
    const detok = state.detoks[state.seqs.indexOf(seq)];
    const text = detok.push(token);
    let reason: 'stop' | 'length' | undefined;
    if (!sp.ignoreEos && this.checkpoint.eosTokenIds.includes(token)) reason = 'stop';
    else if (sp.stopTokenIds.includes(token)) {
      reason = 'stop';
      seq.stopReason = token;
    } else if (detok.stopped !== undefined) {
      reason = 'stop';
      seq.stopReason = detok.stopped;
    } else if (seq.outputIds.length >= sp.maxTokens || seq.length >= this.info.maxModelLen) reason = 'length';
    const tail = reason ? detok.finish() : '';
    if (reason) {
      seq.status = 'finished';
      seq.finishReason = reason;
      seq.finishedTime = now;
    }
    this.emit(state, {
      type: 'delta',
      index: state.seqs.indexOf(seq),
      tokenIds: [token],
      text: text + tail,
      logprobs: logprob ? [logprob] : undefined,
      finishReason: reason,
      stopReason: seq.stopReason,
    });
  }

  private afterStep(state: RequestState): void {
    const first = state.seqs[0];
    if (state.pending.length > 0 && first.outputIds.length > 0) {
      // The prompt's KV is committed now: the other completions find it in the prefix cache.
      for (const seq of state.pending) this.scheduler.add(seq);
      state.pending = [];
    }
    if (state.seqs.every((s) => s.isFinished)) this.finishRequest(state);
  }

  private finishRequest(state: RequestState, error?: Error): void {
    if (!this.requests.delete(state.id)) return;
    for (const seq of state.seqs) this.bySeq.delete(seq);
    if (error) {
      this.metrics.numRequestsFailed++;
      state.reject(error);
      return;
    }
    const result = this.result(state);
    const m = this.metrics;
    m.numRequestsFinished++;
    m.numPromptTokens += result.usage.promptTokens;
    m.numGenerationTokens += result.usage.completionTokens;
    m.queueTime.observe(result.metrics.queueMs / 1000);
    m.e2eLatency.observe(result.metrics.e2eMs / 1000);
    if (state.seqs[0].firstTokenTime !== undefined) m.ttft.observe(result.metrics.ttftMs / 1000);
    this.emit(state, { type: 'done', result });
    state.resolve(result);
  }

  private result(state: RequestState): GenerateResult {
    const outputs: CompletionOutput[] = state.seqs.map((seq, index) => ({
      index,
      tokenIds: [...seq.outputIds],
      text: state.detoks[index].text,
      finishReason: seq.finishReason ?? 'abort',
      stopReason: seq.stopReason,
      logprobs: seq.sampling.logprobs !== undefined ? seq.outputLogprobs : undefined,
    }));
    const first = state.seqs[0];
    const end = performance.now();
    return {
      id: state.id,
      promptTokenIds: state.promptIds,
      ...(state.promptLogprobs ? { promptLogprobs: state.promptLogprobs } : {}),
      outputs,
      usage: {
        promptTokens: state.promptIds.length,
        completionTokens: outputs.reduce((a, o) => a + o.tokenIds.length, 0),
        cachedTokens: first.numCachedTokens,
      },
      metrics: {
        queueMs: (first.firstScheduledTime ?? end) - state.arrival,
        ttftMs: (first.firstTokenTime ?? end) - state.arrival,
        e2eMs: end - state.arrival,
        itlMs: state.itlMs,
      },
    };
  }

  private emit(state: RequestState, e: StreamEvent): void {
    for (const l of state.listeners) l(e);
  }

  /** A step that fails (a bug, not bad input) ends the requests in it; the rest go on. */
  private failBatch(out: SchedulerOutput, error: Error): void {
    const states = new Set(out.scheduled.map(({ seq }) => this.bySeq.get(seq)!));
    for (const state of states) {
      this.stop(
        state.id,
        new SwitchyardError(`request ${state.id} failed in the model step: ${error.message}`, 'internal'),
      );
    }
  }

  /** Nothing could be scheduled although sequences wait: they can never fit; fail them clearly. */
  private failStuck(): void {
    for (const state of [...this.requests.values()]) {
      if (state.seqs.some((s) => s.status === 'waiting' || s.finishReason === 'error')) {
        const why = `request ${state.id} cannot be scheduled: the KV cache (${this.info.kvCacheTokens} tokens) or the step budget is too small for it`;
        this.stop(state.id, new SwitchyardError(why, 'capacity'));
      }
    }
  }
}
