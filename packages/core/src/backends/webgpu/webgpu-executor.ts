import * as ort from 'onnxruntime-node';
import { SwitchyardError } from '../../errors.js';
import type { Executor, KvPoolShape, StepSequence } from '../../executor.js';
import type { Checkpoint } from '../../loader/checkpoint.js';
import { reportLoadProgress } from '../../loader/progress.js';
import { float32ToFloat16 } from '../../loader/safetensors.js';
import type { DecoderSpec } from '../../model.js';
import { buildDecoder, DecoderIO, type DecoderRecipeOptions } from '../../onnx/decoder-recipe.js';
import { GraphBuilder } from '../../onnx/graph-builder.js';
import { cachedGraph, type DerivedWeights } from '../../onnx/graph-cache.js';
import { encodeModel } from '../../onnx/proto.js';
import { gatherImageRows } from '../image-rows.js';
import { createSession, webGpuSessionOptions } from '../ort-session.js';
import { stepShape } from '../step-shape.js';
import { buildKvPoolGraph, PagedAttentionIO, pagedAttention } from './paged-attention.js';

/** Knobs of the webgpu path, each measured in docs/decisions. */
export interface WebGpuTuning {
  /** Pass attention_metadata to PagedAttention (default true). */
  attentionMetadata?: boolean;
  /** ORT WebGPU validation mode: 'disabled' (default here) | 'wgpuOnly' | 'basic' | 'full'. */
  validationMode?: string;
  /** Linear layers: 'matmul' (default), 'gemm', or 'int4' (MatMulNBits, quantized at build). */
  linear?: 'gemm' | 'matmul' | 'int4';
  /** q/k/v and gate/up as single projections (default true). */
  fuseProjections?: boolean;
  /** Residual add + RMSNorm fused (default true). */
  fuseNorms?: boolean;
}

export interface WebGpuExecutorOptions extends KvPoolShape, WebGpuTuning {
  /** Longest sequence the engine admits (sizes the rotary tables). */
  maxModelLen: number;
}

/** The webgpu backend's decoder: the shared recipe in fp16 with PagedAttention. */
export function webGpuRecipe(
  options: Required<Pick<WebGpuTuning, 'attentionMetadata' | 'linear' | 'fuseProjections' | 'fuseNorms'>> & {
    maxPositions: number;
  },
  derived?: DerivedWeights,
): DecoderRecipeOptions {
  return {
    attention: pagedAttention({
      maxPositions: options.maxPositions,
      attentionMetadata: options.attentionMetadata,
    }),
    dtype: 'float16',
    linear: options.linear,
    fuseProjections: options.fuseProjections,
    fuseNorms: options.fuseNorms,
    argmax: true,
    derived,
  };
}

/**
 * The WebGPU execution provider in fp16. The KV pools are allocated once on the device (a small
 * graph's outputs kept as gpu-buffer tensors) and fed to every step, where PagedAttention writes
 * the new tokens' K/V into them in place; only the sampled rows' logits come back to the host.
 */
export class WebGpuExecutor implements Executor {
  readonly device = 'webgpu';
  readonly vocabSize: number;
  readonly kvBytesPerToken: number;
  readonly pool: KvPoolShape;
  /** Wall time of the last step's session.run (ms), for profiling. */
  lastRunMs = 0;
  private readonly maxBlocks: number;

  private constructor(
    private readonly session: ort.InferenceSession,
    /** Keeps the pools' owner alive: the pools are its outputs. */
    private readonly poolSession: ort.InferenceSession,
    private readonly pools: Record<string, ort.Tensor>,
    private readonly spec: DecoderSpec,
    private readonly options: WebGpuExecutorOptions,
  ) {
    this.vocabSize = spec.vocabSize;
    this.kvBytesPerToken = 2 * spec.numLayers * spec.numKvHeads * spec.headDim * 2;
    this.pool = { numBlocks: options.numBlocks, blockSize: options.blockSize };
    this.maxBlocks = Math.ceil(options.maxModelLen / options.blockSize);
  }

  static async create(
    ckpt: Checkpoint,
    spec: DecoderSpec,
    options: WebGpuExecutorOptions,
  ): Promise<WebGpuExecutor> {
    const graphOptions = {
      maxPositions: options.maxModelLen,
      attentionMetadata: options.attentionMetadata ?? true,
      linear: options.linear ?? ('matmul' as const),
      fuseProjections: options.fuseProjections ?? true,
      fuseNorms: options.fuseNorms ?? true,
    };
    const graph = cachedGraph(
      ckpt,
      'decoder-paged',
      { spec, ep: 'webgpu', ...graphOptions },
      (g, w, derived) => buildDecoder(g, spec, w, webGpuRecipe(graphOptions, derived)),
      'float16',
      { convertAll: graphOptions.linear === 'int4' },
    );
    let session: ort.InferenceSession;
    let poolSession: ort.InferenceSession;
    try {
      reportLoadProgress('opening the decoder session', 0, 1);
      session = await createSession(graph, webGpuSessionOptions(options.validationMode));
      reportLoadProgress('opening the decoder session', 1, 1);
      const g = new GraphBuilder();
      buildKvPoolGraph(g, spec.numLayers);
      poolSession = await ort.InferenceSession.create(
        encodeModel(g.build({ '': 21 }, 'kv_pool')),
        webGpuSessionOptions(options.validationMode, {
          graphOptimizationLevel: 'disabled',
          preferredOutputLocation: 'gpu-buffer',
        }),
      );
    } catch (e) {
      throw new SwitchyardError(
        `the webgpu execution provider could not load the model: ${(e as Error).message}`,
        'model_load',
      );
    }
    const shape = [options.numBlocks, options.blockSize, spec.numKvHeads, spec.headDim];
    const pools = await poolSession.run({
      pool_shape: new ort.Tensor('int64', BigInt64Array.from(shape.map(BigInt)), [4]),
    });
    return new WebGpuExecutor(session, poolSession, pools, spec, options);
  }

  async run(batch: readonly StepSequence[]): Promise<Float32Array> {
    const out = await this.step(batch, DecoderIO.logits);
    return out.data as Float32Array;
  }

  async runGreedy(batch: readonly StepSequence[]): Promise<Int32Array> {
    const out = await this.step(batch, DecoderIO.nextTokens);
    return Int32Array.from(out.data as BigInt64Array, Number);
  }

  /** One session run; fetches only `output`. */
  private async step(batch: readonly StepSequence[], output: string): Promise<ort.Tensor> {
    const { T, B, S, maxQ, maxKv } = stepShape(batch);
    const inputIds = new Int32Array(T);
    const cu = new Int32Array(B + 1);
    const past = new Int32Array(B);
    const table = new Int32Array(B * this.maxBlocks);
    const sampleIndex = new Int32Array(S);
    let t = 0;
    let sampled = 0;
    batch.forEach((s, b) => {
      for (let i = 0; i < s.tokenIds.length; i++) inputIds[t + i] = s.tokenIds[i];
      if (s.allLogits) for (let i = 0; i < s.tokenIds.length; i++) sampleIndex[sampled++] = t + i;
      t += s.tokenIds.length;
      cu[b + 1] = t;
      past[b] = s.start;
      const needed = Math.ceil((s.start + s.tokenIds.length) / this.pool.blockSize);
      for (let j = 0; j < needed; j++) table[b * this.maxBlocks + j] = s.blockTable[j];
      if (s.sample && !s.allLogits) sampleIndex[sampled++] = t - 1;
    });
    const feeds: Record<string, ort.Tensor> = {
      ...this.pools,
      [DecoderIO.inputIds]: new ort.Tensor('int32', inputIds, [T]),
      [PagedAttentionIO.cuSeqlens]: new ort.Tensor('int32', cu, [B + 1]),
      [PagedAttentionIO.pastSeqlens]: new ort.Tensor('int32', past, [B]),
      [PagedAttentionIO.blockTable]: new ort.Tensor('int32', table, [B, this.maxBlocks]),
      [DecoderIO.sampleIndex]: new ort.Tensor('int32', sampleIndex, [S]),
    };
    if (this.options.attentionMetadata ?? true) {
      feeds[PagedAttentionIO.attentionMetadata] = new ort.Tensor(
        'int32',
        Int32Array.from([maxQ, maxKv]),
        [2],
      );
    }
    if (this.spec.imageEmbeds) Object.assign(feeds, imageFeeds(batch, this.spec.hiddenSize, T));
    const started = performance.now();
    const out = await this.session.run(feeds, [output]);
    this.lastRunMs = performance.now() - started;
    return out[output];
  }

  async dispose(): Promise<void> {
    await this.session.release();
    await this.poolSession.release();
  }
}

function imageFeeds(batch: readonly StepSequence[], hidden: number, T: number): Record<string, ort.Tensor> {
  const { data, numRows, embedIndex } = gatherImageRows(batch, hidden, T);
  return {
    [DecoderIO.imageEmbeds]: new ort.Tensor('float16', float32ToFloat16(data), [numRows, hidden]),
    [DecoderIO.embedIndex]: new ort.Tensor('int32', embedIndex, [T]),
  };
}
