import type { DependencyContainer } from 'tsyringe';
import { SwitchyardError } from '../errors.js';
import type { Executor, StepSequence } from '../executor.js';
import { ImagePipeline } from '../image/image-pipeline.js';
import type { KvCacheManager } from '../kv-cache.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import { OFF_THREAD_CHARS, TokenizerThread } from '../loader/tokenizer-thread.js';
import type { ModelSpec } from '../model.js';
import { GuidedRuntime } from '../sampling/guided/guided-runtime.js';
import { Sampler } from '../sampling/sampler.js';
import type { Scheduler, SchedulerOutput } from '../scheduler.js';
import type { Sequence } from '../sequence.js';
import type { VisionRunner } from '../vision-runner.js';
import { assembleEngine, type EngineParts } from './assemble-engine.js';
import type { EngineInfo, EngineOptions, EngineStats } from './engine-options.js';
import { ImageEmbeddingCache } from './image-cache.js';
import { InputProcessor } from './input-processor.js';
import { EngineMetrics, engineStats } from './metrics.js';
import { OutputProcessor } from './output-processor.js';
import type { GenerateRequest, GenerateResult, StreamEvent } from './request.js';
import { createRequestState, type RequestState } from './request-state.js';
import { streamEvents } from './stream-events.js';

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
  private readonly vision?: VisionRunner;
  private readonly inputs: InputProcessor;
  private readonly outputs: OutputProcessor;
  private readonly sampler = new Sampler();
  /** Grammar-constrained decoding (`sampling.guided`), jump-forward, min_tokens' EOS ids. */
  readonly guided: GuidedRuntime;
  private readonly requests = new Map<string, RequestState>();
  private readonly bySeq = new Map<Sequence, RequestState>();
  private loopRunning = false;
  private closed = false;
  /** Requests inside `prepare` now (mutated there only). */
  private numPreparing = 0;
  /** A multimodal model's image budgets and decoding threads. */
  readonly imagePipeline?: ImagePipeline;
  private readonly tokenizerThread: TokenizerThread;

  constructor(
    parts: EngineParts,
    private readonly options: Pick<EngineOptions, 'imageCacheMb' | 'checkIntegrity' | 'images'> = {},
  ) {
    ({ info: this.info, checkpoint: this.checkpoint, spec: this.spec, executor: this.executor } = parts);
    ({ scheduler: this.scheduler, kv: this.kv, vision: this.vision } = parts);
    this.imageCache = new ImageEmbeddingCache((options.imageCacheMb ?? 256) * 1024 * 1024);
    const { dir, eosTokenIds, tokenizer } = this.checkpoint;
    const mm = this.spec.multimodal;
    this.imagePipeline = mm && new ImagePipeline(mm, options.images);
    this.tokenizerThread = new TokenizerThread(dir);
    this.inputs = new InputProcessor(
      this.checkpoint,
      this.spec,
      this.info,
      this.imageCache,
      (text, special) => this.encode(text, special),
      this.vision,
      this.imagePipeline,
    );
    this.guided = new GuidedRuntime({ dir, vocabSize: this.info.vocabSize, eosTokenIds, tokenizer });
    this.outputs = new OutputProcessor(eosTokenIds, this.info.maxModelLen, this.metrics, this.guided);
  }

  /** Builds the named parts from the container's registries (see `assembleEngine`). */
  static async create(options: EngineOptions, container: DependencyContainer): Promise<Engine> {
    return new Engine(await assembleEngine(options, container), options);
  }

  get tokenizer() {
    return this.checkpoint.tokenizer;
  }

  /**
   * Token ids of `text`, as `tokenizer.encode` gives them; a long text is encoded on the tokenizer's
   * own thread, so this thread goes on answering and stepping meanwhile.
   */
  encode(text: string, addSpecialTokens = false): Promise<number[]> {
    if (text.length < OFF_THREAD_CHARS) return Promise.resolve(this.tokenizer.encode(text, addSpecialTokens));
    return this.tokenizerThread.encode(text, addSpecialTokens);
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
    const abort = () => this.requests.get(state.id) === state && this.stop(state.id);
    yield* streamEvents(state, () => this.enqueue(state), abort, signal);
  }

  /** Stops a request wherever it is; its result resolves with finish reason 'abort'. */
  abort(requestId: string): boolean {
    return this.stop(requestId);
  }

  /** Ends a request's sequences; resolves its result, or rejects it with `error`. */
  private stop(requestId: string, error?: Error): boolean {
    const state = this.requests.get(requestId);
    if (!state) return false;
    for (const seq of state.seqs) {
      if (state.pending.includes(seq)) continue;
      if (!seq.isFinished) this.scheduler.abort(seq.id);
    }
    for (const seq of state.seqs) {
      if (!seq.isFinished) {
        seq.status = 'finished';
        seq.finishReason = 'abort';
      }
    }
    state.pending = [];
    this.finishRequest(state, error);
    return true;
  }

  /** A snapshot of the engine's gauges and counters (the latency histograms are in `metrics`). */
  stats(): EngineStats {
    return engineStats(this.scheduler, this.kv, this.metrics, this.imageCache, this.numPreparing);
  }

  numUnfinished(): number {
    return this.requests.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const id of [...this.requests.keys()]) this.abort(id);
    await this.imagePipeline?.close();
    await this.tokenizerThread.close();
    await this.executor.dispose();
    await this.vision?.dispose();
    await this.guided.close();
  }

  /** Runs the input processor and makes one sequence per completion. Enqueues nothing. */
  private async prepare(req: GenerateRequest, signal?: AbortSignal): Promise<RequestState> {
    if (this.closed) throw new SwitchyardError('the engine is closed', 'capacity');
    this.numPreparing++;
    let input: Awaited<ReturnType<InputProcessor['process']>>;
    try {
      input = await this.inputs.process(req, signal);
    } finally {
      this.numPreparing--;
    }
    const id = req.id ?? `req-${nextRequestNum++}`;
    if (this.requests.has(id))
      throw new SwitchyardError(`request id ${id} is already in use`, 'invalid_request', 'id');
    const spec = input.sampling.guided;
    const grammar = spec ? await this.guided.compile(spec) : undefined;
    const state = createRequestState(id, req, input, this.tokenizer);
    if (grammar) for (const seq of state.seqs) this.guided.bind(seq, grammar);
    return state;
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
    if (out.scheduled.length === 0) return this.failStuck();
    const now = performance.now();
    const batch: StepSequence[] = out.scheduled.map(({ seq, numNewTokens }) => {
      seq.firstScheduledTime ??= now;
      const start = seq.numComputedTokens;
      const tokenIds = new Array<number>(numNewTokens);
      for (let i = 0; i < numNewTokens; i++) tokenIds[i] = seq.tokenAt(start + i);
      const sample = start + numNewTokens === seq.length;
      return { tokenIds, start, blockTable: this.kv.blockTable(seq), sample, mm: seq.mm };
    });
    // Greedy rows need only their argmax; a provider that picks it on the device saves the read-back.
    const greedy =
      this.executor.runGreedy !== undefined &&
      out.scheduled.every(({ seq }, i) => !batch[i].sample || Sampler.isPlainGreedy(seq.sampling));
    let logits: Float32Array | undefined;
    let tokens: Int32Array | undefined;
    try {
      if (greedy) tokens = await this.executor.runGreedy!(batch);
      else logits = await this.executor.run(batch);
    } catch (e) {
      return this.failBatch(out, e as Error);
    }
    this.metrics.numSteps++;
    const V = this.info.vocabSize;
    const touched = new Set<RequestState>();
    const sampled = out.scheduled.filter((_, i) => batch[i].sample).map(({ seq }) => seq);
    const constraints = tokens ? [] : await Promise.all(sampled.map((seq) => this.guided.constraint(seq)));
    sampled.forEach((seq, r) => {
      // A request aborted while the step ran is already finished; its row is dropped.
      if (seq.isFinished) return;
      const state = this.bySeq.get(seq)!;
      if (tokens) this.outputs.append(state, seq, tokens[r]);
      else {
        const row = logits!.subarray(r * V, (r + 1) * V);
        const { token, logprob } = this.sampler.sample(row, seq, constraints[r]);
        this.outputs.append(state, seq, token, logprob);
        // Jump-forward: tokens the grammar forces join the output now; the next step computes them.
        for (const t of seq.isFinished ? [] : this.guided.jumpForward(seq)) {
          this.outputs.append(state, seq, t);
          if (seq.isFinished) break;
        }
      }
      touched.add(state);
    });
    const usage = this.kv.usage();
    this.metrics.kvPeakUsage = Math.max(this.metrics.kvPeakUsage, usage.numUsedBlocks / usage.numBlocks);
    this.scheduler.update(out);
    if (this.options.checkIntegrity) this.kv.checkIntegrity();
    for (const state of touched) this.afterStep(state);
  }

  private afterStep(state: RequestState): void {
    if (state.pending.length > 0 && state.seqs[0].outputIds.length > 0) {
      // The prompt's KV is committed now: the other completions find it in the prefix cache.
      for (const seq of state.pending) this.scheduler.add(seq);
      state.pending = [];
    }
    if (state.seqs.every((s) => s.isFinished)) this.finishRequest(state);
  }

  private finishRequest(state: RequestState, error?: Error): void {
    if (!this.requests.delete(state.id)) return;
    for (const seq of state.seqs) {
      this.bySeq.delete(seq);
      this.guided.release(seq);
    }
    this.outputs.settle(state, error);
  }

  /**
   * A step that fails (a bug, not bad input) ends the requests in it; the rest go on. Blocks
   * committed ahead for the step were never written: the KV manager forgets its cached prefixes.
   */
  private failBatch(out: SchedulerOutput, error: Error): void {
    for (const state of new Set(out.scheduled.map(({ seq }) => this.bySeq.get(seq)!))) {
      const why = `request ${state.id} failed in the model step: ${error.message}`;
      this.stop(state.id, new SwitchyardError(why, 'internal'));
    }
    this.kv.reset();
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
