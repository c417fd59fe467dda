import type { DependencyContainer } from 'tsyringe';
import { SwitchyardError } from '../errors.js';
import type { Executor, ExecutorHealth } from '../executor.js';
import { ImagePipeline } from '../image/image-pipeline.js';
import type { KvCacheManager } from '../kv-cache.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import type { ModelSpec } from '../model.js';
import { GuidedRuntime } from '../sampling/guided/guided-runtime.js';
import type { SamplingParams } from '../sampling-params.js';
import type { Scheduler } from '../scheduler.js';
import type { Sequence } from '../sequence.js';
import { assembleEngine, type EngineParts } from './assemble-engine.js';
import type { EngineInfo, EngineOptions, EngineStats } from './engine-options.js';
import { generationDefaults } from './generation-defaults.js';
import { ImageEmbeddingCache } from './image-cache.js';
import { InputProcessor } from './input-processor.js';
import { EngineMetrics, engineStats } from './metrics.js';
import { OutputProcessor } from './output-processor.js';
import type { GenerateRequest, GenerateResult, StreamEvent } from './request.js';
import { createRequestState, type RequestState } from './request-state.js';
import { RequestTable } from './request-table.js';
import { RowSampler, runStep } from './sample-rows.js';
import { streamEvents } from './stream-events.js';
import type { BatchingVisionRunner } from './vision-batcher.js';

export type { EngineInfo, EngineOptions, EngineStats } from './engine-options.js';

let nextRequestNum = 0;

/**
 * The engine: one loop of schedule → run → sample → update over the parts the container names.
 * Requests enter through `generate` (offline batch) or `stream` (per request, abortable); the
 * input processor turns them into sequences, the output processor turns tokens into results.
 */
export class Engine {
  readonly metrics = new EngineMetrics();
  /** Image embeddings by content hash; its hit/miss counters feed the metrics. */
  readonly imageCache: ImageEmbeddingCache;
  readonly info: EngineInfo;
  readonly checkpoint: Checkpoint;
  readonly spec: ModelSpec;
  readonly scheduler: Scheduler;
  readonly kv: KvCacheManager;
  readonly executor: Executor;
  /** The vision tower behind its batcher (a VLM); `vision.stats` counts its runs. */
  readonly vision?: BatchingVisionRunner;
  private readonly inputs: InputProcessor;
  private readonly outputs: OutputProcessor;
  private readonly rows: RowSampler;
  /** Grammar-constrained decoding (`sampling.guided`), jump-forward, min_tokens' EOS ids. */
  readonly guided: GuidedRuntime;
  private readonly requests: RequestTable;
  private loopRunning = false;
  private closed = false;
  /** Requests inside `prepare` now (mutated there only). */
  private numPreparing = 0;
  /** A multimodal model's image budgets and decoding threads. */
  readonly imagePipeline?: ImagePipeline;

  constructor(
    parts: EngineParts,
    private readonly options: Pick<
      EngineOptions,
      'imageCacheMb' | 'imageCacheEntries' | 'checkIntegrity' | 'generationConfig' | 'images'
    > = {},
  ) {
    ({ info: this.info, checkpoint: this.checkpoint, spec: this.spec, executor: this.executor } = parts);
    ({ scheduler: this.scheduler, kv: this.kv, vision: this.vision } = parts);
    const cacheBytes = (options.imageCacheMb ?? 256) * 1024 * 1024;
    this.imageCache = new ImageEmbeddingCache(cacheBytes, options.imageCacheEntries);
    const { dir, eosTokenIds, tokenizer } = this.checkpoint;
    this.imagePipeline = this.spec.multimodal && new ImagePipeline(this.spec.multimodal, options.images);
    this.inputs = new InputProcessor(
      this.checkpoint,
      this.spec,
      this.info,
      this.imageCache,
      this.vision,
      this.imagePipeline,
      generationDefaults(options.generationConfig, this.checkpoint),
    );
    this.guided = new GuidedRuntime({ dir, vocabSize: this.info.vocabSize, eosTokenIds, tokenizer });
    this.outputs = new OutputProcessor(eosTokenIds, this.info.maxModelLen, this.metrics, this.guided);
    this.rows = new RowSampler(this.info.vocabSize, eosTokenIds, this.guided, this.outputs);
    this.requests = new RequestTable(this.scheduler, this.outputs, this.guided);
  }

  /** Builds the named parts from the container's registries (see `assembleEngine`). */
  static async create(options: EngineOptions, container: DependencyContainer): Promise<Engine> {
    return new Engine(await assembleEngine(options, container), options);
  }

  /** What a request's omitted sampling settings become (see `GenerationConfigSource`). */
  get samplingDefaults(): Partial<SamplingParams> {
    return this.inputs.samplingDefaults;
  }

  get tokenizer() {
    return this.checkpoint.tokenizer;
  }

  /**
   * Token ids of `text`, as `tokenizer.encode` gives them; a long text is encoded on the tokenizer's
   * own thread, so this thread goes on answering and stepping meanwhile.
   */
  encode(text: string, addSpecialTokens = false): Promise<number[]> {
    return this.inputs.encode(text, addSpecialTokens);
  }

  /** Refuses a text too long for the context from its length alone (see `InputProcessor`). */
  checkPromptChars(chars: number, param = 'prompt'): void {
    this.inputs.checkPromptChars(chars, param);
  }

  /** The prompt ids of a request's text or messages, as the engine would run them (images not expanded). */
  promptIds(req: GenerateRequest): Promise<number[]> {
    return this.inputs.promptIds(req);
  }

  /** Runs requests to completion; results in request order. A bad request rejects before any runs. */
  async generate(requests: GenerateRequest[]): Promise<GenerateResult[]> {
    const states = await Promise.all(requests.map((r) => this.prepare(r)));
    for (const s of states) this.enqueue(s);
    return Promise.all(states.map((s) => s.done));
  }

  /**
   * Streams one request's tokens as they come. Aborting `signal` stops it wherever it is: before
   * or while it is prepared (images waiting for their budget, decoding, encoding: the stream
   * rejects with the signal's reason and nothing is queued), or once queued (it ends with finish
   * reason 'abort' and its KV is freed).
   */
  async *stream(request: GenerateRequest, signal?: AbortSignal): AsyncGenerator<StreamEvent> {
    signal?.throwIfAborted();
    const state = await this.prepare(request, signal);
    signal?.throwIfAborted();
    const abort = () => this.requests.get(state.id) === state && this.requests.stop(state.id);
    yield* streamEvents(state, () => this.enqueue(state), abort, signal);
  }

  /** Stops a request wherever it is; its result resolves with finish reason 'abort'. */
  abort(requestId: string): boolean {
    return this.requests.stop(requestId);
  }

  /** A snapshot of the engine's gauges and counters (the latency histograms are in `metrics`). */
  stats(): EngineStats {
    const { scheduler, kv, metrics, imageCache, numPreparing, vision } = this;
    return engineStats(scheduler, kv, metrics, imageCache, numPreparing, vision?.stats);
  }

  /** Whether the executor can run steps; not 'ok' while its process restarts or once it stays down. */
  health(): ExecutorHealth {
    return this.executor.health?.() ?? { status: 'ok', numRestarts: 0 };
  }

  numUnfinished(): number {
    return this.requests.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.requests.stopAll();
    await this.imagePipeline?.close();
    await this.inputs.close();
    await this.executor.dispose();
    await this.vision?.dispose();
    await this.guided.close();
  }

  /** Runs the input processor and makes one sequence per completion. Enqueues nothing. */
  private async prepare(req: GenerateRequest, signal?: AbortSignal): Promise<RequestState> {
    if (this.closed) throw new SwitchyardError('the engine is closed', 'capacity');
    const health = this.health();
    if (health.status === 'failed') throw new SwitchyardError(health.reason!, 'internal');
    this.numPreparing++;
    let input: Awaited<ReturnType<InputProcessor['process']>>;
    try {
      input = await this.inputs.process(req, signal);
    } finally {
      this.numPreparing--;
    }
    const id = req.id ?? `req-${nextRequestNum++}`;
    if (this.requests.get(id))
      throw new SwitchyardError(`request id ${id} is already in use`, 'invalid_request', 'id');
    const spec = input.sampling.guided;
    const grammar = spec ? await this.guided.compile(spec) : undefined;
    const state = createRequestState(id, req, input, this.tokenizer);
    if (grammar) for (const seq of state.seqs) this.guided.bind(seq, grammar);
    return state;
  }

  private enqueue(state: RequestState): void {
    this.requests.add(state);
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
          this.requests.stopAll(
            new SwitchyardError(`engine step failed: ${(e as Error).message}`, 'internal'),
          );
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
    this.checkKvPool();
    const out = this.scheduler.schedule();
    // Nothing could be scheduled although sequences wait: they can never fit.
    if (out.scheduled.length === 0) return this.requests.failStuck(this.info.kvCacheTokens);
    const wantsAll = (seq: Sequence) => !!this.requests.of(seq)?.promptLogprobs;
    let run: Awaited<ReturnType<typeof runStep>>;
    try {
      run = await runStep(this.executor, this.kv, out.scheduled, wantsAll);
    } catch (e) {
      // Blocks committed ahead for the step were never written: the KV manager forgets its prefixes.
      this.requests.failStep(out.scheduled, e as Error);
      this.checkKvPool();
      return this.kv.reset();
    }
    this.metrics.numSteps++;
    const { batch, logits, tokens } = run;
    const stateOf = (seq: Sequence) => this.requests.of(seq);
    const touched = await this.rows.sampleStep(out.scheduled, batch, stateOf, logits, tokens);
    const usage = this.kv.usage();
    this.metrics.kvPeakUsage = Math.max(this.metrics.kvPeakUsage, usage.numUsedBlocks / usage.numBlocks);
    this.scheduler.update(out);
    if (this.options.checkIntegrity) this.kv.checkIntegrity();
    for (const state of touched) this.requests.afterStep(state);
  }

  /** The executor's process died and took the KV pool: requests holding KV fail, prefixes are forgotten. */
  private checkKvPool(): void {
    const lost = this.executor.takeLostPool?.();
    if (!lost) return;
    this.requests.failHoldingKv(lost);
    this.kv.reset();
  }
}
