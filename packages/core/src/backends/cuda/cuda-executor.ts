import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { SwitchyardError } from '../../errors.js';
import type { Executor, KvPoolShape, StepSequence } from '../../executor.js';
import type { Checkpoint } from '../../loader/checkpoint.js';
import { float32ToHalf } from '../../loader/safetensors.js';
import type { DecoderSpec } from '../../model.js';
import { buildDecoder, DecoderIO, type DecoderRecipeOptions } from '../../onnx/decoder-recipe.js';
import { cachedGraph } from '../../onnx/graph-cache.js';
import type { DerivedWeights } from '../../onnx/weights.js';
import { gatherImageRows } from '../image-rows.js';
import { PagedAttentionIO, pagedAttention } from '../webgpu/paged-attention.js';
import { openCudaProvider } from './cuda-provider.js';
import type { CudaRuntime } from './cuda-runtime.js';
import { type CudaLibraries, locateCudaLibraries } from './install.js';
import type { OrtRuntime, Ptr } from './ort-capi.js';
import { type PackedLayout, packDecodeBucket, packedLayout, packStep, stepShape } from './step-inputs.js';

/** The decoder's inputs and outputs: the recipe's, plus paged attention's (shared with webgpu). */
const PagedDecoderIO = { ...DecoderIO, ...PagedAttentionIO } as const;

/** Knobs of the cuda path (`ExecutorOptions.settings`), each measured in docs/decisions/0008. */
export interface CudaSettings {
  /** Folder(s) searched first for the CUDA runtime libraries (`--cuda-lib-dir`). */
  cudaLibDir?: string;
  /** Pass the step's length bounds to PagedAttention in host memory (default true). */
  attentionMetadata?: boolean;
  fuseProjections?: boolean;
  fuseNorms?: boolean;
  /**
   * `next_tokens` as a two-stage argmax over this many chunks of each logits row (default 128):
   * ORT's CUDA ArgMax over one 151,936-wide row took 3.6 ms of a 5.3 ms 0.5B step.
   */
  argmaxChunks?: number;
  /** fp16 linear layers as 'matmul' (default; MatMul on transposes ORT folds at load) or 'gemm' (transB). */
  linear?: 'matmul' | 'gemm';
  /** ORT log severity: 0 verbose … 4 fatal (default 3). */
  logLevel?: number;
  /**
   * Decode steps (one new token per sequence) replay CUDA graphs captured per batch-size bucket,
   * padded up to the bucket (default true).
   */
  cudaGraph?: boolean;
  /** The buckets (default `DEFAULT_GRAPH_BATCH_SIZES`); larger decode batches run without a graph. */
  graphBatchSizes?: number[];
  /** ORT's profiler on, writing `<prefix>_<date>.json` (see `endProfiling`). */
  profilePrefix?: string;
  /**
   * Where a VLM's vision tower runs: 'cpu' (default; ORT's CPU provider) or 'cuda' (its own session
   * on the CUDA provider; opt-in: it crashes beside a large KV pool, docs/decisions/0008).
   */
  visionTower?: 'cpu' | 'cuda';
  /**
   * With `quantization: 'int4'`: decode steps of up to this many sequences run the int4
   * (MatMulNBits) weights, prefill steps and larger batches the dtype's half weights, both held
   * (default `DEFAULT_INT4_MAX_BATCH`). 'all': every step runs int4 and no half weights are held
   * (the least memory).
   */
  int4MaxBatch?: number | 'all';
}

/**
 * Decode batches up to which int4 weights run by default. On the H200 (ORT 1.29) an 8B decode step
 * took 3.1 ms in int4 against 5.1 ms in half precision alone, 4.3 against ~5.2 at 4 sequences,
 * and 6.3 at 8, where half precision wins (docs/decisions/0008).
 */
export const DEFAULT_INT4_MAX_BATCH = 4;

/** Decode batch sizes captured as CUDA graphs (like vLLM's capture sizes, up to 256). */
export const DEFAULT_GRAPH_BATCH_SIZES = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256];

/**
 * One decoder session over the shared KV pools: its binding for steps run eagerly and its decode
 * graphs, captured per bucket. With int4 weights there may be two: int4 for small decode batches.
 */
interface DecoderSession {
  session: Ptr;
  binding: Ptr;
  buckets: Map<number, GraphBucket>;
}

/** One captured decode graph: its own binding over inputs and outputs at fixed device addresses. */
interface GraphBucket {
  size: number;
  binding: Ptr;
  runOptions: Ptr;
  /** Pinned host twin of the bucket's device inputs (ids, cu, past, table, sample). */
  host: Int32Array;
  hostAddress: bigint;
  device: bigint;
  offsets: PackedLayout;
  logits: bigint;
  nextTokens: bigint;
}

export interface CudaExecutorOptions {
  blockSize: number;
  /** Weights, activations and KV caches (default float16); bf16 checkpoints run bf16 in place. */
  dtype?: CudaDtype;
  /** Tokens the KV pools hold; undefined = memoryUtilization × free device memory after weights. */
  kvCacheTokens?: number;
  /** Fraction of the free device memory after the weights given to the KV pools (default 0.9). */
  memoryUtilization?: number;
  maxModelLen: number;
  quantization: 'none' | 'int4';
  settings?: CudaSettings;
  /** Where the libraries are (default: `locateCudaLibraries`). */
  libraries?: CudaLibraries;
}

/** The half types the cuda decoder runs in. */
export type CudaDtype = 'float16' | 'bfloat16';
type CudaLinear = 'int4' | 'matmul' | 'gemm';

/** How the cuda executor builds its decoder graph (the graph cache's key). */
export interface CudaRecipeOptions {
  dtype: CudaDtype;
  maxPositions: number;
  attentionMetadata: boolean;
  linear: CudaLinear;
  fuseProjections: boolean;
  fuseNorms: boolean;
  argmaxChunks: number;
}

/** The decoder recipe on cuda: PagedAttention, argmax on the device, the dtype's half type throughout. */
export function cudaRecipe(options: CudaRecipeOptions, derived?: DerivedWeights): DecoderRecipeOptions {
  return {
    attention: pagedAttention({
      maxPositions: options.maxPositions,
      attentionMetadata: options.attentionMetadata,
    }),
    dtype: options.dtype,
    linear: options.linear,
    fuseProjections: options.fuseProjections,
    fuseNorms: options.fuseNorms,
    argmax: true,
    argmaxChunks: options.argmaxChunks,
    derived,
  };
}

/**
 * Whether a step runs the int4 weights of a mixed pair: decode steps (one query token each) of at
 * most `int4MaxBatch` sequences. Prefill reads each weight once for many tokens: half precision.
 */
export function takesInt4(maxQ: number, numSeqs: number, int4MaxBatch: number): boolean {
  return maxQ === 1 && numSeqs <= int4MaxBatch;
}

/** `int4MaxBatch` as given, or an error saying what it may be. */
export function checkInt4MaxBatch(value: unknown): number | 'all' {
  if (value === 'all' || (Number.isInteger(value) && (value as number) >= 1)) return value as number | 'all';
  throw new SwitchyardError(
    `int4MaxBatch must be a whole number of sequences (1 or more) or 'all', got ${JSON.stringify(value)}`,
    'invalid_request',
    'int4MaxBatch',
  );
}

/**
 * KV pool tokens for a memory utilization, as vLLM's `--gpu-memory-utilization`: everything in use
 * now (weights, the provider's workspace, other processes) plus the pool stays within
 * `utilization` × total device memory.
 */
export function kvTokensForMemory(
  memory: { free: number; total: number },
  utilization: number,
  kvBytesPerToken: number,
): number {
  if (!(utilization > 0 && utilization <= 1)) {
    throw new SwitchyardError(
      `memoryUtilization must be in (0, 1], got ${utilization}`,
      'invalid_request',
      'memoryUtilization',
    );
  }
  const used = memory.total - memory.free;
  const budget = utilization * memory.total - used;
  if (budget < kvBytesPerToken) {
    const gib = (b: number) => (b / 2 ** 30).toFixed(1);
    throw new SwitchyardError(
      `memoryUtilization ${utilization} leaves no room for the KV cache: ${gib(used)} GiB of ${gib(memory.total)} GiB are in use after loading the weights; raise memoryUtilization or set kvCacheTokens`,
      'capacity',
      'memoryUtilization',
    );
  }
  return Math.floor(budget / kvBytesPerToken);
}

/**
 * The decoder on ONNX Runtime's CUDA provider through the C API. Weights, KV pools, step inputs
 * and outputs live in device memory at fixed addresses (IO binding): the KV pools are one
 * allocation made once, bound as PagedAttention's caches (updated in place); each step packs its
 * int32 inputs into one pinned host buffer, copies it to the device in one call, and reads back
 * only what sampling needs (argmax ids for greedy steps, the sampled rows' logits otherwise).
 */
export class CudaExecutor implements Executor {
  readonly device = 'cuda';
  readonly vocabSize: number;
  readonly kvBytesPerToken: number;
  readonly pool: KvPoolShape;
  /** Wall time of the last step's RunWithBinding (ms), for profiling. */
  lastRunMs = 0;
  /** Summed over steps (ms): the ORT run, the input copy, the output copy. */
  readonly timing = { runMs: 0, uploadMs: 0, downloadMs: 0, steps: 0 };
  private readonly maxBlocks: number;
  private readonly maxLen: number;
  private readonly memInfo: Ptr;
  private readonly cpuInfo: Ptr;
  /** Half weights (int4 with int4MaxBatch 'all'): prefill and every step `small` does not take. */
  private readonly full: DecoderSession;
  /** int4 weights for decode batches of up to `smallMaxBatch` sequences (quantization int4). */
  private readonly small?: DecoderSession;
  private readonly smallMaxBatch: number;
  private readonly runOptions: Ptr;
  /** Pinned host staging of the step's int32 inputs, and its device twin. */
  private staging = { host: new Int32Array(0), hostAddress: 0n, device: 0n, capacity: 0 };
  private outputBuf = { device: 0n, bytes: 0 };
  private embedsBuf = { device: 0n, bytes: 0 };
  private readonly metadata?: { address: bigint; view: Int32Array };
  private disposed = false;
  /** Set when decode steps replay CUDA graphs; buckets are captured on first use. */
  private graphSizes: number[];
  /** Steps that replayed a graph, and steps that ran the int4 weights of a mixed pair (profiling). */
  graphSteps = 0;
  int4Steps = 0;

  private constructor(
    private readonly ort: OrtRuntime,
    private readonly cuda: CudaRuntime,
    sessions: { full: Ptr; small?: Ptr; smallMaxBatch: number },
    epDevice: Ptr,
    private readonly spec: DecoderSpec,
    numBlocks: number,
    private readonly options: CudaExecutorOptions,
    private readonly poolAddress: bigint,
    graphs: boolean,
  ) {
    this.vocabSize = spec.vocabSize;
    this.kvBytesPerToken = CudaExecutor.kvBytesPerToken(spec);
    this.pool = { numBlocks, blockSize: options.blockSize };
    // The engine admits no sequence longer than the pool: that bounds block tables and lengths.
    this.maxLen = Math.min(options.maxModelLen, numBlocks * options.blockSize);
    this.maxBlocks = Math.ceil(this.maxLen / options.blockSize);
    this.memInfo = ort.deviceMemoryInfo(epDevice);
    this.cpuInfo = ort.cpuMemoryInfo();
    // With graphs on, every other run says so (-1: neither capture nor replay).
    this.runOptions = ort.runOptions(graphs ? { gpu_graph_id: '-1' } : {});
    this.graphSizes = graphs
      ? [...(options.settings?.graphBatchSizes ?? DEFAULT_GRAPH_BATCH_SIZES)].sort((a, b) => a - b)
      : [];
    if (options.settings?.attentionMetadata ?? true) {
      const host = cuda.mallocHost(8);
      this.metadata = { address: host.address, view: new Int32Array(host.view, 0, 2) };
    }
    const open = (session: Ptr): DecoderSession => {
      const binding = ort.ioBinding(session);
      this.bindPools(binding);
      if (this.metadata) {
        const value = ort.tensorAt(this.cpuInfo, this.metadata.address, 'int32', [2]);
        ort.bindInput(binding, PagedDecoderIO.attentionMetadata, value);
        ort.release(value);
      }
      return { session, binding, buckets: new Map() };
    };
    this.full = open(sessions.full);
    this.small = sessions.small ? open(sessions.small) : undefined;
    this.smallMaxBatch = sessions.smallMaxBatch;
  }

  /** The session a step runs: int4 for a decode batch of at most `smallMaxBatch`, else the full one. */
  private sessionFor(maxQ: number, B: number): DecoderSession {
    return this.small && takesInt4(maxQ, B, this.smallMaxBatch) ? this.small : this.full;
  }

  /**
   * Binds the caches: per layer K then V, each [numBlocks + 1, blockSize, kvHeads, headDim] fp16.
   * The extra last block is scratch, written only by the padding rows of graph buckets.
   */
  private bindPools(binding: Ptr): void {
    const spec = this.spec;
    const blocks = this.pool.numBlocks + 1;
    const shape = [blocks, this.pool.blockSize, spec.numKvHeads, spec.headDim];
    const dtype = this.options.dtype ?? 'float16';
    const cacheBytes = blocks * this.pool.blockSize * spec.numKvHeads * spec.headDim * 2;
    for (let i = 0; i < spec.numLayers; i++) {
      for (const [j, name] of [PagedDecoderIO.keyCache(i), PagedDecoderIO.valueCache(i)].entries()) {
        const at = this.poolAddress + BigInt((2 * i + j) * cacheBytes);
        const value = this.ort.tensorAt(this.memInfo, at, dtype, shape);
        this.ort.bindInput(binding, name, value);
        this.ort.release(value);
      }
    }
  }

  static kvBytesPerToken(spec: DecoderSpec): number {
    return 2 * spec.numLayers * spec.numKvHeads * spec.headDim * 2;
  }

  static async create(
    ckpt: Checkpoint,
    spec: DecoderSpec,
    options: CudaExecutorOptions,
  ): Promise<CudaExecutor> {
    const settings = options.settings ?? {};
    const dtype = options.dtype ?? 'float16';
    if (dtype === 'bfloat16' && options.quantization === 'int4') {
      throw new SwitchyardError(
        'int4 weights run with float16 activations on cuda; use --dtype float16 with --quantization int4',
        'invalid_request',
        'quantization',
      );
    }
    const int4 = options.quantization === 'int4';
    const int4MaxBatch = checkInt4MaxBatch(settings.int4MaxBatch ?? DEFAULT_INT4_MAX_BATCH);
    const fullLinear: CudaLinear = int4 && int4MaxBatch === 'all' ? 'int4' : (settings.linear ?? 'matmul');
    const recipeFor = (linear: CudaLinear): CudaRecipeOptions => ({
      dtype,
      maxPositions: options.maxModelLen,
      attentionMetadata: settings.attentionMetadata ?? true,
      linear,
      fuseProjections: settings.fuseProjections ?? true,
      fuseNorms: settings.fuseNorms ?? true,
      argmaxChunks: settings.argmaxChunks ?? 128,
    });
    // The libraries first (a missing install fails at once), the graphs next (they may take
    // minutes), the provider last: the order measured on the H200 (opening the provider before a
    // long graph build was followed by crashes in the first bf16/int4 runs; docs/decisions/0008).
    const libraries = options.libraries ?? locateCudaLibraries({ cudaLibDir: settings.cudaLibDir });
    const graphFor = (linear: CudaLinear) => {
      const recipe = recipeFor(linear);
      return cachedGraph(
        ckpt,
        'decoder-paged',
        { spec, ep: 'cuda', ...recipe },
        (g, w, derived) => buildDecoder(g, spec, w, cudaRecipe(recipe, derived)),
        dtype,
        { convertAll: linear === 'int4' },
      );
    };
    const fullGraph = graphFor(fullLinear);
    const smallGraph = int4 && int4MaxBatch !== 'all' ? graphFor('int4') : undefined;
    const provider = openCudaProvider({ logLevel: settings.logLevel, libraries });
    const { ort, cuda, device } = provider;
    try {
      const open = (graph: typeof fullGraph, cudaGraph: boolean): Ptr => {
        const model = new Uint8Array(readFileSync(graph.path));
        const folder = graph.externalDataFolder ?? dirname(graph.path);
        const so = ort.sessionOptions({
          optimization: 'all',
          profilePrefix: settings.profilePrefix,
          config: { 'session.model_external_initializers_file_folder_path': folder },
        });
        try {
          // Grow the device arena by what is asked, not in powers of two: the KV pools take the rest.
          ort.appendProvider(so, device, {
            arena_extend_strategy: 'kSameAsRequested',
            ...(cudaGraph ? { enable_cuda_graph: '1' } : {}),
          });
          return ort.session(model, so);
        } finally {
          ort.release(so);
        }
      };
      let graphs = (settings.cudaGraph ?? true) && !spec.imageEmbeds;
      const openAll = (cudaGraph: boolean) => {
        const full = open(fullGraph, cudaGraph);
        return { full, small: smallGraph && open(smallGraph, cudaGraph) };
      };
      let sessions: { full: Ptr; small?: Ptr };
      try {
        sessions = openAll(graphs);
      } catch (e) {
        if (!graphs) throw e;
        process.emitWarning(
          `cuda: CUDA graphs unavailable for this model (${(e as Error).message}); running without`,
        );
        graphs = false;
        sessions = openAll(false);
      }
      const kvBytesPerToken = CudaExecutor.kvBytesPerToken(spec);
      const tokens =
        options.kvCacheTokens ??
        kvTokensForMemory(cuda.memInfo(), options.memoryUtilization ?? 0.9, kvBytesPerToken);
      const numBlocks = Math.floor(tokens / options.blockSize);
      if (numBlocks < 1) {
        throw new SwitchyardError(
          `the KV cache would hold ${tokens} tokens, less than one block of ${options.blockSize}; raise kvCacheTokens / memoryUtilization`,
          'capacity',
          'kvCacheTokens',
        );
      }
      // One more block than the engine sees: the scratch block of graph padding rows.
      const poolBytes = (numBlocks + 1) * options.blockSize * kvBytesPerToken;
      const pool = cuda.malloc(poolBytes);
      cuda.memset(pool, 0, poolBytes);
      const smallMaxBatch = int4MaxBatch === 'all' ? 0 : int4MaxBatch;
      return new CudaExecutor(
        ort,
        cuda,
        { ...sessions, smallMaxBatch },
        device,
        spec,
        numBlocks,
        options,
        pool,
        graphs,
      );
    } catch (e) {
      provider.close();
      if (e instanceof SwitchyardError) throw e;
      throw new SwitchyardError(
        `the cuda execution provider could not load the model: ${(e as Error).message}`,
        'model_load',
      );
    }
  }

  async run(batch: readonly StepSequence[]): Promise<Float32Array> {
    return this.step(batch, false) as Float32Array;
  }

  async runGreedy(batch: readonly StepSequence[]): Promise<Int32Array> {
    return this.step(batch, true) as Int32Array;
  }

  /** Host staging + device buffer for at least `elements` int32s (grown, never shrunk). */
  private ensureStaging(elements: number): void {
    if (elements <= this.staging.capacity) return;
    const capacity = Math.max(elements, 2 * this.staging.capacity, 1 << 16);
    if (this.staging.capacity) {
      this.cuda.freeHost(this.staging.hostAddress);
      this.cuda.free(this.staging.device);
    }
    const host = this.cuda.mallocHost(capacity * 4);
    this.staging = {
      host: new Int32Array(host.view, 0, capacity),
      hostAddress: host.address,
      device: this.cuda.malloc(capacity * 4),
      capacity,
    };
  }

  private ensure(buf: { device: bigint; bytes: number }, bytes: number): bigint {
    if (bytes > buf.bytes) {
      if (buf.bytes) this.cuda.free(buf.device);
      buf.bytes = Math.max(bytes, 2 * buf.bytes);
      buf.device = this.cuda.malloc(buf.bytes);
    }
    return buf.device;
  }

  private step(batch: readonly StepSequence[], greedy: boolean): Float32Array | Int32Array {
    if (this.disposed) throw new SwitchyardError('the cuda executor is disposed', 'internal');
    const { T, B, S, maxQ, maxKv } = stepShape(batch);
    const decoder = this.sessionFor(maxQ, B);
    if (decoder === this.small) this.int4Steps++;
    if (maxQ === 1 && S === B && B <= (this.graphSizes.at(-1) ?? 0) && !this.spec.imageEmbeds) {
      try {
        return this.graphStep(batch, greedy, decoder);
      } catch (e) {
        // A capture the provider refuses: run every later step without graphs (the step's KV
        // writes are idempotent, so it is simply run again below).
        process.emitWarning(
          `cuda: CUDA graph replay failed (${(e as Error).message}); running without graphs`,
        );
        this.graphSizes = [];
      }
    }
    const layout = packedLayout(T, B, S, this.maxBlocks);
    const total = layout.total;
    this.ensureStaging(total);
    packStep(batch, layout, this.maxBlocks, this.pool.blockSize, this.staging.host);
    // A step that samples nothing (prefill chunks only) still gathers one row, dropped here: ORT's
    // CUDA kernels crashed the process on an empty sample_index (H200, ORT 1.29).
    const rows = Math.max(S, 1);
    if (S === 0) this.staging.host[layout.sample] = 0;
    const t0 = performance.now();
    this.cuda.upload(this.staging.device, this.staging.hostAddress, total * 4);
    const t1 = performance.now();
    const dev = this.staging.device;
    const at = (off: number) => dev + BigInt(off * 4);
    const ort = this.ort;
    const inputs: [string, bigint, number[]][] = [
      [PagedDecoderIO.inputIds, at(layout.ids), [T]],
      [PagedDecoderIO.cuSeqlens, at(layout.cu), [B + 1]],
      [PagedDecoderIO.pastSeqlens, at(layout.past), [B]],
      [PagedDecoderIO.blockTable, at(layout.table), [B, this.maxBlocks]],
      [PagedDecoderIO.sampleIndex, at(layout.sample), [rows]],
    ];
    const { binding } = decoder;
    for (const [name, address, shape] of inputs) {
      const value = ort.tensorAt(this.memInfo, address, 'int32', shape);
      ort.bindInput(binding, name, value);
      ort.release(value);
    }
    if (this.metadata) {
      this.metadata.view[0] = maxQ;
      this.metadata.view[1] = maxKv;
    }
    if (this.spec.imageEmbeds) this.bindImages(binding, batch, T);
    const outBytes = greedy ? rows * 8 : rows * this.vocabSize * 4;
    const outAddress = this.ensure(this.outputBuf, outBytes);
    const outValue = greedy
      ? ort.tensorAt(this.memInfo, outAddress, 'int64', [rows])
      : ort.tensorAt(this.memInfo, outAddress, 'float', [rows, this.vocabSize]);
    ort.clearOutputs(binding);
    ort.bindOutput(binding, greedy ? PagedDecoderIO.nextTokens : PagedDecoderIO.logits, outValue);
    ort.release(outValue);
    ort.runWithBinding(decoder.session, this.runOptions, binding);
    const t2 = performance.now();
    // The provider's stream may be non-blocking: wait for it before reading its outputs.
    this.cuda.synchronize();
    let result: Float32Array | Int32Array;
    if (greedy) {
      const ids = new BigInt64Array(S);
      if (S) this.cuda.download(ids, outAddress);
      result = Int32Array.from(ids, Number);
    } else {
      result = new Float32Array(S * this.vocabSize);
      if (S) this.cuda.download(result, outAddress);
    }
    const t3 = performance.now();
    this.lastRunMs = t2 - t1;
    this.timing.uploadMs += t1 - t0;
    this.timing.runMs += t2 - t1;
    this.timing.downloadMs += t3 - t2;
    this.timing.steps++;
    return result;
  }

  /**
   * The session's bucket for a decode batch of `B`, created (and captured by its first run) on
   * first use.
   */
  private bucket(decoder: DecoderSession, B: number): GraphBucket {
    const size = this.graphSizes.find((g) => g >= B) as number;
    let b = decoder.buckets.get(size);
    if (b) return b;
    const offsets = packedLayout(size, size, size, this.maxBlocks);
    const { ids, cu, past, table, sample, total } = offsets;
    const host = this.cuda.mallocHost(total * 4);
    const device = this.cuda.malloc(total * 4);
    const logits = this.cuda.malloc(size * this.vocabSize * 4);
    const nextTokens = this.cuda.malloc(size * 8);
    const ort = this.ort;
    const binding = ort.ioBinding(decoder.session);
    this.bindPools(binding);
    const at = (off: number) => device + BigInt(off * 4);
    const bind = (name: string, value: Ptr, output = false) => {
      if (output) ort.bindOutput(binding, name, value);
      else ort.bindInput(binding, name, value);
      ort.release(value);
    };
    bind(PagedDecoderIO.inputIds, ort.tensorAt(this.memInfo, at(ids), 'int32', [size]));
    bind(PagedDecoderIO.cuSeqlens, ort.tensorAt(this.memInfo, at(cu), 'int32', [size + 1]));
    bind(PagedDecoderIO.pastSeqlens, ort.tensorAt(this.memInfo, at(past), 'int32', [size]));
    bind(PagedDecoderIO.blockTable, ort.tensorAt(this.memInfo, at(table), 'int32', [size, this.maxBlocks]));
    bind(PagedDecoderIO.sampleIndex, ort.tensorAt(this.memInfo, at(sample), 'int32', [size]));
    if (this.metadata) {
      // Read when the graph is captured: bounds valid for every replay (1 query token, any length).
      const meta = this.cuda.mallocHost(8);
      new Int32Array(meta.view, 0, 2).set([1, this.maxLen]);
      bind(PagedDecoderIO.attentionMetadata, ort.tensorAt(this.cpuInfo, meta.address, 'int32', [2]));
    }
    bind(PagedDecoderIO.logits, ort.tensorAt(this.memInfo, logits, 'float', [size, this.vocabSize]), true);
    bind(PagedDecoderIO.nextTokens, ort.tensorAt(this.memInfo, nextTokens, 'int64', [size]), true);
    const runOptions = ort.runOptions({ gpu_graph_id: String(decoder.buckets.size + 1) });
    b = {
      size,
      binding,
      runOptions,
      host: new Int32Array(host.view, 0, total),
      hostAddress: host.address,
      device,
      offsets,
      logits,
      nextTokens,
    };
    decoder.buckets.set(size, b);
    return b;
  }

  /**
   * A decode step replayed from the bucket's CUDA graph: the real rows first, then padding rows
   * (one token at position 0 whose KV goes to the scratch block) up to the bucket size.
   */
  private graphStep(
    batch: readonly StepSequence[],
    greedy: boolean,
    decoder: DecoderSession,
  ): Float32Array | Int32Array {
    const B = batch.length;
    const bucket = this.bucket(decoder, B);
    const { offsets: o, size } = bucket;
    packDecodeBucket(batch, size, o, this.maxBlocks, this.pool.blockSize, this.pool.numBlocks, bucket.host);
    const t0 = performance.now();
    this.cuda.upload(bucket.device, bucket.hostAddress, o.total * 4);
    const t1 = performance.now();
    this.ort.runWithBinding(decoder.session, bucket.runOptions, bucket.binding);
    const t2 = performance.now();
    // The provider's stream may be non-blocking: wait for it before reading its outputs.
    this.cuda.synchronize();
    let result: Float32Array | Int32Array;
    if (greedy) {
      const ids = new BigInt64Array(B);
      this.cuda.download(ids, bucket.nextTokens);
      result = Int32Array.from(ids, Number);
    } else {
      result = new Float32Array(B * this.vocabSize);
      this.cuda.download(result, bucket.logits);
    }
    const t3 = performance.now();
    this.lastRunMs = t2 - t1;
    this.timing.uploadMs += t1 - t0;
    this.timing.runMs += t2 - t1;
    this.timing.downloadMs += t3 - t2;
    this.timing.steps++;
    this.graphSteps++;
    return result;
  }

  private bindImages(binding: Ptr, batch: readonly StepSequence[], T: number): void {
    const hidden = this.spec.hiddenSize;
    const { data, numRows, embedIndex } = gatherImageRows(batch, hidden, T);
    const dtype = this.options.dtype ?? 'float16';
    const half = float32ToHalf(data, dtype);
    const indexOffset = Math.ceil(half.byteLength / 256) * 256;
    const base = this.ensure(this.embedsBuf, indexOffset + T * 4);
    const indexAt = base + BigInt(indexOffset);
    this.cuda.upload(base, half);
    this.cuda.upload(indexAt, embedIndex);
    // Pageable sources: make sure the DMA landed before the provider's stream reads it.
    this.cuda.synchronize();
    const embeds = this.ort.tensorAt(this.memInfo, base, dtype, [numRows, hidden]);
    const index = this.ort.tensorAt(this.memInfo, indexAt, 'int32', [T]);
    this.ort.bindInput(binding, DecoderIO.imageEmbeds, embeds);
    this.ort.bindInput(binding, DecoderIO.embedIndex, index);
    this.ort.release(embeds);
    this.ort.release(index);
  }

  /** Ends ORT's profile (settings.profilePrefix) and returns its JSON file. */
  endProfiling(): string {
    return this.ort.endProfiling(this.full.session);
  }

  /** Device memory (bytes) free and total, as the CUDA runtime reports it. */
  memInfoNow(): { free: number; total: number } {
    return this.cuda.memInfo();
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.ort.close();
    this.cuda.freeAll();
  }
}
