import type { DependencyContainer } from 'tsyringe';
import { SwitchyardError } from '../errors.js';
import type { Executor, StepSequence } from '../executor.js';
import type { KvCacheManager } from '../kv-cache.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import type { ModelSpec } from '../model.js';
import { Sampler, tokenLogprob } from '../sampling/sampler.js';
import type { SamplingParams } from '../sampling-params.js';
import type { Scheduler, SchedulerOutput } from '../scheduler.js';
import type { Sequence } from '../sequence.js';
import type { VisionRunner } from '../vision-runner.js';
import { assembleEngine, type EngineParts } from './assemble-engine.js';
import type { EngineInfo, EngineOptions, EngineStats } from './engine-options.js';
import { generationDefaults } from './generation-defaults.js';
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
  private readonly sampler: Sampler;
  private readonly requests = new Map<string, RequestState>();
  private readonly bySeq = new Map<Sequence, RequestState>();
  private loopRunning = false;
  private closed = false;

  constructor(
    parts: EngineParts,
    private readonly options: Pick<
      EngineOptions,
      'imageCacheMb' | 'imageCacheEntries' | 'checkIntegrity' | 'generationConfig'
    > = {},
  ) {
    ({ info: this.info, checkpoint: this.checkpoint, spec: this.spec, executor: this.executor } = parts);
    ({ scheduler: this.scheduler, kv: this.kv, vision: this.vision } = parts);
    this.imageCache = new ImageEmbeddingCache(
      (options.imageCacheMb ?? 256) * 1024 * 1024,
      options.imageCacheEntries,
    );
    this.sampler = new Sampler({ eosTokenIds: this.checkpoint.eosTokenIds });
    this.inputs = new InputProcessor(
      this.checkpoint,
      this.spec,
      this.info,
      this.imageCache,
      this.vision,
      generationDefaults(options.generationConfig, this.checkpoint),
    );
    this.outputs = new OutputProcessor(this.checkpoint.eosTokenIds, this.info.maxModelLen, this.metrics);
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

  /** Runs requests to completion; results in request order. A bad request rejects before any runs. */
  async generate(requests: GenerateRequest[]): Promise<GenerateResult[]> {
    const states = await Promise.all(requests.map((r) => this.prepare(r)));
    for (const s of states) this.enqueue(s);
    return Promise.all(states.map((s) => s.done));
  }

  /** Streams one request's tokens as they come; aborting `signal` stops it and frees its KV. */
  async *stream(request: GenerateRequest, signal?: AbortSignal): AsyncGenerator<StreamEvent> {
    const state = await this.prepare(request);
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
    return engineStats(this.scheduler, this.kv, this.metrics, this.imageCache);
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

  /** Runs the input processor and makes one sequence per completion. Enqueues nothing. */
  private async prepare(req: GenerateRequest): Promise<RequestState> {
    if (this.closed) throw new SwitchyardError('the engine is closed', 'capacity');
    const input = await this.inputs.process(req);
    const id = req.id ?? `req-${nextRequestNum++}`;
    if (this.requests.has(id))
      throw new SwitchyardError(`request id ${id} is already in use`, 'invalid_request', 'id');
    return createRequestState(id, req, input, this.tokenizer);
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
      const allLogits = start < seq.promptIds.length && this.bySeq.get(seq)?.promptLogprobs !== undefined;
      return { tokenIds, start, blockTable: this.kv.blockTable(seq), sample, allLogits, mm: seq.mm };
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
      return this.failBatch(out, e as Error);
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
      const state = this.bySeq.get(seq)!;
      if (tokens) this.outputs.append(state, seq, tokens[r]);
      else {
        const { token, logprob } = this.sampler.sample(logits!.subarray(r * V, (r + 1) * V), seq);
        this.outputs.append(state, seq, token, logprob);
      }
      touched.add(state);
    });
    const usage = this.kv.usage();
    this.metrics.kvPeakUsage = Math.max(this.metrics.kvPeakUsage, usage.numUsedBlocks / usage.numBlocks);
    this.scheduler.update(out);
    if (this.options.checkIntegrity) this.kv.checkIntegrity();
    for (const state of touched) this.afterStep(state);
  }

  /** Prompt logprobs from a prefill chunk's rows: the row at position q scores prompt token q + 1. */
  private recordPromptLogprobs(seq: Sequence, b: StepSequence, logits: Float32Array, row: number): void {
    const out = this.bySeq.get(seq)?.promptLogprobs;
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
    for (const seq of state.seqs) this.bySeq.delete(seq);
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
