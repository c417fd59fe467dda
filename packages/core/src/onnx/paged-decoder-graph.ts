import type { DecoderSpec } from '../model.js';
import { embedTokens, ropeInvFreq } from './decoder-graph.js';
import type { GraphBuilder } from './graph-builder.js';
import { DataType } from './proto.js';
import { quantizeInt4 } from './quantize.js';
import type { DerivedWeights, WeightRef } from './weights.js';

/**
 * Inputs and outputs of the fp16 decoder for GPU providers. Attention is
 * `com.microsoft.PagedAttention` over KV pools that are graph inputs and are updated in place:
 * - `input_ids` [T] (int32), the packed new tokens of B sequences;
 * - `cumulative_sequence_length` [B+1], `past_seqlens` [B] (tokens already cached per sequence),
 *   `block_table` [B, maxBlocks] (int32);
 * - `key_cache.i` / `value_cache.i` [numBlocks, blockSize, kvHeads, headDim] (fp16, on the device);
 * - `attention_metadata` [2]: the step's longest query and longest key length (CPU), which spares
 *   each attention node a device read-back;
 * - `sample_index` [S]: the packed rows whose logits are wanted;
 * - with `spec.imageEmbeds`: `image_embeds` [N, hidden] (fp16) and `embed_index` [T].
 * Outputs: `logits` [S, V] in fp32, and `next_tokens` [S], their argmax.
 */
export const PagedDecoderIO = {
  inputIds: 'input_ids',
  cuSeqlens: 'cumulative_sequence_length',
  pastSeqlens: 'past_seqlens',
  blockTable: 'block_table',
  attentionMetadata: 'attention_metadata',
  sampleIndex: 'sample_index',
  keyCache: (i: number) => `key_cache.${i}`,
  valueCache: (i: number) => `value_cache.${i}`,
  logits: 'logits',
  /** Argmax of each sampled row's logits (int64 [S]): what greedy steps fetch instead of logits. */
  nextTokens: 'next_tokens',
} as const;

export interface PagedDecoderOptions {
  /** Positions the rotary tables cover (the longest sequence the engine admits). */
  maxPositions: number;
  /** Pass the step's length bounds to PagedAttention in CPU memory (input 16). */
  attentionMetadata: boolean;
  /**
   * How linear layers run: 'gemm' (Gemm with transB on the weights in place), 'matmul'
   * (MatMul on the transposed weights, folded by ORT at load), 'int4' (MatMulNBits on weights
   * quantized at build time, block 32).
   */
  linear: 'gemm' | 'matmul' | 'int4';
  /** q/k/v as one projection and gate/up as one (weights concatenated at load). */
  fuseProjections: boolean;
  /** Residual add + RMSNorm as one SkipSimplifiedLayerNormalization. */
  fuseNorms: boolean;
}

/** Emits a Llama-family decoder in fp16 whose attention is PagedAttention with rotary inside. */
export function buildPagedDecoderGraph(
  g: GraphBuilder,
  spec: DecoderSpec,
  w: WeightRef,
  options: PagedDecoderOptions,
  derived?: DerivedWeights,
): void {
  const { numHeads: H, numKvHeads: Hkv, headDim: D, vocabSize, hiddenSize } = spec;
  const p = spec.weightPrefix;
  const F16 = DataType.FLOAT16;
  const I32 = DataType.INT32;

  const inputIds = g.input(PagedDecoderIO.inputIds, I32, ['T']);
  const cuSeqlens = g.input(PagedDecoderIO.cuSeqlens, I32, ['B1']);
  const pastSeqlens = g.input(PagedDecoderIO.pastSeqlens, I32, ['B']);
  const blockTable = g.input(PagedDecoderIO.blockTable, I32, ['B', 'max_blocks']);
  const metadata = options.attentionMetadata ? g.input(PagedDecoderIO.attentionMetadata, I32, [2]) : '';
  const sampleIndex = g.input(PagedDecoderIO.sampleIndex, I32, ['S']);

  // Rotary tables as transformers computes them (fp32 angles), stored in fp16.
  const invFreq = ropeInvFreq(spec.rope, D);
  const n = options.maxPositions;
  const cos = new Float32Array(n * (D / 2));
  const sin = new Float32Array(n * (D / 2));
  for (let pos = 0; pos < n; pos++) {
    for (let i = 0; i < D / 2; i++) {
      const angle = Math.fround(pos * invFreq[i]);
      cos[pos * (D / 2) + i] = Math.cos(angle);
      sin[pos * (D / 2) + i] = Math.sin(angle);
    }
  }
  const cosCache = g.float16(cos, [n, D / 2], 'rope_cos_cache');
  const sinCache = g.float16(sin, [n, D / 2], 'rope_sin_cache');

  const rowsOf = (weight: string): number => {
    if (weight.endsWith('q_proj')) return H * D;
    if (weight.endsWith('k_proj') || weight.endsWith('v_proj')) return Hkv * D;
    if (weight.endsWith('o_proj') || weight.endsWith('down_proj')) return hiddenSize;
    return spec.intermediateSize;
  };
  /** MatMulNBits on the group's weights, concatenated and quantized to int4 at build time. */
  const int4Linear = (x: string, group: string[], sizes: number[]): string => {
    if (!derived) throw new Error('int4 weights need derived weights from the graph cache');
    const N = sizes.reduce((a, b) => a + b, 0);
    const parts = group.map((n) => derived.read(`${n}.weight`));
    const K = parts[0].length / sizes[0];
    const all = new Float32Array(N * K);
    let offset = 0;
    for (const part of parts) {
      all.set(part, offset);
      offset += part.length;
    }
    const { packed, scales } = quantizeInt4(all, N, K);
    const id = `${group[0]}.int4`;
    const B = derived.add({ name: `${id}.B`, dataType: DataType.UINT8, dims: [N, K / 32, 16] }, packed);
    const S = derived.add(
      { name: `${id}.scales`, dataType: DataType.FLOAT16, dims: [N * (K / 32)] },
      new Uint8Array(scales.buffer),
    );
    return g.op(
      'MatMulNBits',
      [x, B, S],
      { K, N, bits: 4, block_size: 32 },
      { domain: 'com.microsoft', name: 'matmul_nbits' },
    );
  };
  /**
   * x × Wᵀ for one or several weights sharing the input (their outputs split back apart). Fused
   * weights are concatenated in the graph, which ORT folds into one initializer at load.
   */
  const project = (x: string, weights: string[], hasBias: boolean): string[] => {
    const name = weights.map((n) => n.split('.').pop()).join('_');
    const groups = options.fuseProjections ? [weights] : weights.map((n) => [n]);
    return groups.flatMap((group) => {
      const sizes = group.map(rowsOf);
      let y: string;
      if (options.linear === 'int4') y = int4Linear(x, group, sizes);
      else {
        const weight =
          group.length === 1
            ? w(`${group[0]}.weight`)
            : g.op(
                'Concat',
                group.map((n) => w(`${n}.weight`)),
                { axis: 0 },
              );
        y =
          options.linear === 'matmul'
            ? g.op('MatMul', [x, g.op('Transpose', [weight], { perm: [1, 0] })], {}, { name })
            : g.op('Gemm', [x, weight], { transB: 1 }, { name });
      }
      if (hasBias) {
        const bias =
          group.length === 1
            ? w(`${group[0]}.bias`)
            : g.op(
                'Concat',
                group.map((n) => w(`${n}.bias`)),
                { axis: 0 },
              );
        y = g.op('Add', [y, bias]);
      }
      return group.length === 1 ? [y] : g.opN('Split', [y, g.int64(sizes)], group.length, { axis: -1 });
    });
  };
  const rmsNorm = (x: string, weight: string): string =>
    g.op(
      'SimplifiedLayerNormalization',
      [x, w(weight)],
      { axis: -1, epsilon: { float: spec.rmsNormEps } },
      { name: 'rmsnorm' },
    );
  /** x + delta and its RMSNorm: [sum, normed]. */
  const addNorm = (x: string, delta: string, weight: string): [string, string] => {
    if (!options.fuseNorms) {
      const sum = g.op('Add', [x, delta], {}, { name: 'residual' });
      return [sum, rmsNorm(sum, weight)];
    }
    const [normed, , , sum] = g.opN(
      'SkipSimplifiedLayerNormalization',
      [x, delta, w(weight)],
      4,
      { epsilon: { float: spec.rmsNormEps } },
      { domain: 'com.microsoft', name: 'skip_rmsnorm' },
    );
    return [sum, normed];
  };

  let x = embedTokens(g, spec, w, inputIds, F16);
  let h = rmsNorm(x, `${p}layers.0.input_layernorm.weight`);
  for (let i = 0; i < spec.numLayers; i++) {
    g.within(`layers.${i}`, () => {
      const pre = `${p}layers.${i}`;
      const attnIn = [`${pre}.self_attn.q_proj`, `${pre}.self_attn.k_proj`, `${pre}.self_attn.v_proj`];
      const qkv = project(h, attnIn, spec.qkvBias);
      let [q, k] = qkv;
      const v = qkv[2];
      if (spec.qkNorm) {
        q = g.reshape(rmsNorm(g.reshape(q, [-1, H, D]), `${pre}.self_attn.q_norm.weight`), [-1, H * D]);
        k = g.reshape(rmsNorm(g.reshape(k, [-1, Hkv, D]), `${pre}.self_attn.k_norm.weight`), [-1, Hkv * D]);
      }
      const keyCache = g.input(PagedDecoderIO.keyCache(i), F16, ['num_blocks', 'block_size', Hkv, D]);
      const valueCache = g.input(PagedDecoderIO.valueCache(i), F16, ['num_blocks', 'block_size', Hkv, D]);
      const inputs = [q, k, v, keyCache, valueCache, cuSeqlens, pastSeqlens, blockTable, cosCache, sinCache];
      if (metadata) inputs.push('', '', '', '', '', '', metadata);
      const attn = g.op(
        'PagedAttention',
        inputs,
        {
          num_heads: H,
          kv_num_heads: Hkv,
          scale: { float: 1 / Math.sqrt(D) },
          do_rotary: 1,
          rotary_interleaved: 0,
        },
        { domain: 'com.microsoft', name: 'paged_attention' },
      );
      const [o] = project(attn, [`${pre}.self_attn.o_proj`], spec.oBias);
      let h2: string;
      [x, h2] = addNorm(x, o, `${pre}.post_attention_layernorm.weight`);
      const [gate, up] = project(h2, [`${pre}.mlp.gate_proj`, `${pre}.mlp.up_proj`], spec.mlpBias);
      const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up], {}, { name: 'swiglu' });
      const [down] = project(act, [`${pre}.mlp.down_proj`], spec.mlpBias);
      const next = i + 1 < spec.numLayers ? `${p}layers.${i + 1}.input_layernorm.weight` : `${p}norm.weight`;
      [x, h] = addNorm(x, down, next);
    });
  }
  // `h` is every row after the final norm; only the sampled rows reach the head.
  const normed = g.op('Gather', [h, sampleIndex], { axis: 0 }, { name: 'pick_sampled' });
  const head = spec.tieWordEmbeddings ? `${p}embed_tokens.weight` : spec.lmHeadName;
  const headOut =
    options.linear === 'gemm'
      ? g.op('Gemm', [normed, w(head)], { transB: 1 }, { name: 'lm_head' })
      : g.op('MatMul', [normed, g.op('Transpose', [w(head)], { perm: [1, 0] })], {}, { name: 'lm_head' });
  const logits = g.op('Cast', [headOut], { to: DataType.FLOAT });
  g.output(logits, PagedDecoderIO.logits, DataType.FLOAT, ['S', vocabSize]);
  g.output(g.op('ArgMax', [logits], { axis: -1, keepdims: 0 }), PagedDecoderIO.nextTokens, DataType.INT64, [
    'S',
  ]);
}

/** A graph whose outputs are the zeroed KV pools, run once with outputs left on the device. */
export function buildKvPoolGraph(g: GraphBuilder, numLayers: number): void {
  const shape = g.input('pool_shape', DataType.INT64, [4]);
  for (let i = 0; i < numLayers; i++) {
    for (const name of [PagedDecoderIO.keyCache(i), PagedDecoderIO.valueCache(i)]) {
      const zeros = g.op('ConstantOfShape', [shape], {
        value: { tensor: { dataType: DataType.FLOAT16, dims: [1], raw: new Uint8Array(2) } },
      });
      g.output(zeros, name, DataType.FLOAT16, ['num_blocks', 'block_size', 'kv_heads', 'head_dim']);
    }
  }
}
