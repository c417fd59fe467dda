import type { DecoderSpec } from '../model.js';
import type { GraphBuilder } from './graph-builder.js';
import { DataType, type DataTypeCode } from './proto.js';
import { quantizeInt4 } from './quantize.js';
import { ropeInvFreq } from './rope.js';
import type { DerivedWeights, WeightRef } from './weights.js';

/**
 * Names every decoder graph shares, whatever its attention op: `input_ids` [T] (the packed new
 * tokens of the step), `sample_index` [S] (the packed rows whose logits are wanted), for VLM
 * decoders `image_embeds` [N, hidden] and `embed_index` [T] (row of `image_embeds` per token, -1
 * for text), and the outputs `logits` [S, V] (fp32) and, when asked, `next_tokens` [S] (argmax).
 * The attention op adds its own inputs and outputs (see `AttentionOp`).
 */
export const DecoderIO = {
  inputIds: 'input_ids',
  sampleIndex: 'sample_index',
  imageEmbeds: 'image_embeds',
  embedIndex: 'embed_index',
  logits: 'logits',
  /** Argmax of each sampled row's logits (int64 [S]): what greedy steps fetch instead of logits. */
  nextTokens: 'next_tokens',
} as const;

/** What an attention op sees of the graph it is part of. */
export interface AttentionContext {
  g: GraphBuilder;
  spec: DecoderSpec;
  /** The graph's activation type (DataType.FLOAT, FLOAT16 or BFLOAT16). */
  dataType: DataTypeCode;
  /** RoPE inverse frequencies of the spec (transformers' float32 values, scaling applied). */
  invFreq: Float32Array;
}

/**
 * One layer's attention as a backend contributes it: q [T, H·D], k and v [T, Hkv·D] of the packed
 * tokens — projected and (Qwen3) q/k-normed, not yet rotated — in; [T, H·D] out. The op applies
 * RoPE, stores the new K/V where its backend keeps the cache, attends causally (over the last
 * `spec.slidingWindow` positions when set) and declares whatever inputs and outputs it needs.
 */
export type AttentionLayer = (layer: number, q: string, k: string, v: string) => string;

/** Makes a graph's attention: called once, before the layers, to declare the step-wide inputs. */
export type AttentionOp = (ctx: AttentionContext) => AttentionLayer;

export interface DecoderRecipeOptions {
  /** The backend's attention. */
  attention: AttentionOp;
  /** Weights and activations: 'float32', 'float16' or 'bfloat16' (logits are fp32 either way). */
  dtype: 'float32' | 'float16' | 'bfloat16';
  /**
   * How linear layers run: 'gemm' (Gemm with transB on the weights in place, bias inside),
   * 'matmul' (MatMul on the transposed weights, folded by ORT at load), 'int4' (MatMulNBits on
   * weights quantized at build time, block 32; needs `derived`).
   */
  linear: 'gemm' | 'matmul' | 'int4';
  /** q/k/v as one projection and gate/up as one (weights concatenated in the graph). */
  fuseProjections: boolean;
  /** Residual add + RMSNorm as one SkipSimplifiedLayerNormalization. */
  fuseNorms: boolean;
  /** Also output `next_tokens`, the argmax of each sampled row. */
  argmax: boolean;
  /**
   * `next_tokens` as a two-stage argmax over this many column chunks of each row (see
   * `rowArgMax`); 0 or absent = one ArgMax over the whole row.
   */
  argmaxChunks?: number;
  derived?: DerivedWeights;
}

/**
 * The one Llama-family decoder recipe (RMSNorm, q/k/v projections, optional q/k norm, the
 * backend's attention with RoPE, o projection, SwiGLU MLP, final norm and head on the sampled rows
 * only). A model feature is written here once; a backend contributes only its attention op and
 * its choice of dtype, linear layers and fusions.
 */
export function buildDecoder(
  g: GraphBuilder,
  spec: DecoderSpec,
  w: WeightRef,
  options: DecoderRecipeOptions,
): void {
  const { numHeads: H, numKvHeads: Hkv, headDim: D, vocabSize, hiddenSize } = spec;
  const p = spec.weightPrefix;
  const dataType = { float32: DataType.FLOAT, float16: DataType.FLOAT16, bfloat16: DataType.BFLOAT16 }[
    options.dtype
  ];
  const inputIds = g.input(DecoderIO.inputIds, DataType.INT32, ['T']);
  const sampleIndex = g.input(DecoderIO.sampleIndex, DataType.INT32, ['S']);
  const attend = options.attention({ g, spec, dataType, invFreq: ropeInvFreq(spec.rope, D) });

  const rowsOf = (weight: string): number => {
    if (weight.endsWith('q_proj')) return H * D;
    if (weight.endsWith('k_proj') || weight.endsWith('v_proj')) return Hkv * D;
    if (weight.endsWith('o_proj') || weight.endsWith('down_proj')) return hiddenSize;
    return spec.intermediateSize;
  };
  /** Input width of a projection (its weight's columns). */
  const colsOf = (weight: string): number => {
    if (weight.endsWith('o_proj')) return H * D;
    if (weight.endsWith('down_proj')) return spec.intermediateSize;
    return hiddenSize;
  };
  const concat = (names: string[]): string =>
    names.length === 1 ? w(names[0]) : g.op('Concat', names.map(w), { axis: 0 });
  /** MatMulNBits on the group's weights, concatenated and quantized to int4 at build time. */
  const int4Linear = (x: string, group: string[], sizes: number[]): string => {
    const derived = options.derived;
    if (!derived) throw new Error('int4 weights need derived weights from the graph cache');
    const N = sizes.reduce((a, b) => a + b, 0);
    const K = colsOf(group[0]);
    const id = `${group[0]}.int4`;
    const { B, scales: S } = derived.int4
      ? derived.int4(
          group.map((n) => `${n}.weight`),
          N,
          K,
          id,
        )
      : quantizedNow(derived, group, N, K, id);
    return g.op(
      'MatMulNBits',
      [x, B, S],
      { K, N, bits: 4, block_size: 32 },
      { domain: 'com.microsoft', name: 'matmul_nbits' },
    );
  };
  /** x × Wᵀ (+ bias) for one or several weights sharing the input (their outputs split back apart). */
  const project = (x: string, weights: string[], hasBias: boolean): string[] => {
    const name = weights.map((n) => n.split('.').pop()).join('_');
    const groups = options.fuseProjections ? [weights] : weights.map((n) => [n]);
    return groups.flatMap((group) => {
      const sizes = group.map(rowsOf);
      const bias = hasBias ? concat(group.map((n) => `${n}.bias`)) : undefined;
      let y: string;
      if (options.linear === 'gemm') {
        const inputs = [x, concat(group.map((n) => `${n}.weight`))];
        if (bias) inputs.push(bias);
        y = g.op('Gemm', inputs, { transB: 1 }, { name });
      } else {
        y =
          options.linear === 'int4'
            ? int4Linear(x, group, sizes)
            : g.op(
                'MatMul',
                [x, g.op('Transpose', [concat(group.map((n) => `${n}.weight`))], { perm: [1, 0] })],
                {},
                { name },
              );
        if (bias) y = g.op('Add', [y, bias]);
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

  let x = embedTokens(g, spec, w, inputIds, dataType);
  // With fused norms each layer's input norm is computed at the end of the previous layer.
  let h = options.fuseNorms ? rmsNorm(x, `${p}layers.0.input_layernorm.weight`) : '';
  for (let i = 0; i < spec.numLayers; i++) {
    g.within(`layers.${i}`, () => {
      const pre = `${p}layers.${i}`;
      if (!options.fuseNorms) h = rmsNorm(x, `${pre}.input_layernorm.weight`);
      const attnIn = [`${pre}.self_attn.q_proj`, `${pre}.self_attn.k_proj`, `${pre}.self_attn.v_proj`];
      let [q, k, v] = project(h, attnIn, spec.qkvBias);
      if (spec.qkNorm) {
        q = g.reshape(rmsNorm(g.reshape(q, [-1, H, D]), `${pre}.self_attn.q_norm.weight`), [-1, H * D]);
        k = g.reshape(rmsNorm(g.reshape(k, [-1, Hkv, D]), `${pre}.self_attn.k_norm.weight`), [-1, Hkv * D]);
      }
      const attn = g.within('attention', () => attend(i, q, k, v));
      const [o] = project(attn, [`${pre}.self_attn.o_proj`], spec.oBias);
      let h2: string;
      [x, h2] = addNorm(x, o, `${pre}.post_attention_layernorm.weight`);
      const [gate, up] = project(h2, [`${pre}.mlp.gate_proj`, `${pre}.mlp.up_proj`], spec.mlpBias);
      const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up], {}, { name: 'swiglu' });
      const [down] = project(act, [`${pre}.mlp.down_proj`], spec.mlpBias);
      if (options.fuseNorms) {
        const next =
          i + 1 < spec.numLayers ? `${p}layers.${i + 1}.input_layernorm.weight` : `${p}norm.weight`;
        [x, h] = addNorm(x, down, next);
      } else {
        x = g.op('Add', [x, down], {}, { name: 'residual' });
      }
    });
  }
  // Only the sampled rows reach the head (norm is per row: gathering first changes nothing).
  const normed = options.fuseNorms
    ? g.op('Gather', [h, sampleIndex], { axis: 0 }, { name: 'pick_sampled' })
    : rmsNorm(g.op('Gather', [x, sampleIndex], { axis: 0 }, { name: 'pick_sampled' }), `${p}norm.weight`);
  const head = spec.tieWordEmbeddings ? `${p}embed_tokens.weight` : spec.lmHeadName;
  const headOut =
    options.linear === 'gemm'
      ? g.op('Gemm', [normed, w(head)], { transB: 1 }, { name: 'lm_head' })
      : g.op('MatMul', [normed, g.op('Transpose', [w(head)], { perm: [1, 0] })], {}, { name: 'lm_head' });
  const logits = dataType === DataType.FLOAT ? headOut : g.op('Cast', [headOut], { to: DataType.FLOAT });
  g.output(logits, DecoderIO.logits, DataType.FLOAT, ['S', vocabSize]);
  if (options.argmax) {
    const next = rowArgMax(g, logits, vocabSize, options.argmaxChunks);
    g.output(next, DecoderIO.nextTokens, DataType.INT64, ['S']);
  }
}

/**
 * The argmax of each row of `x` [S, V] (fp32) as int64 [S], first index on ties like ArgMax. With
 * `chunks` > 1 the row is cut into `chunks` pieces (padded with -inf to a multiple): an ArgMax per
 * piece, then one over the pieces' maxima. ORT's CUDA ArgMax (cuDNN) runs a long row almost
 * serially (3.6 ms for one 151,936-wide row on the H200); short rows run in parallel.
 */
export function rowArgMax(g: GraphBuilder, x: string, V: number, chunks = 0): string {
  if (chunks <= 1) return g.op('ArgMax', [x], { axis: -1, keepdims: 0 });
  const W = Math.ceil(V / chunks);
  const padded =
    W * chunks === V
      ? x
      : g.op('Pad', [x, g.int64([0, 0, 0, W * chunks - V]), g.float32([Number.NEGATIVE_INFINITY], [])], {
          mode: 'constant',
        });
  const pieces = g.reshape(padded, [-1, chunks, W]);
  const local = g.op('ArgMax', [pieces], { axis: -1, keepdims: 1 }); // [S, C, 1]
  const maxima = g.op('GatherElements', [pieces, local], { axis: -1 }); // [S, C, 1]
  const chunk = g.op('ArgMax', [maxima], { axis: 1, keepdims: 1 }); // [S, 1, 1]
  const within = g.op('GatherElements', [local, chunk], { axis: 1 }); // [S, 1, 1]
  const index = g.op('Add', [g.op('Mul', [chunk, g.int64([W], [])]), within]);
  return g.reshape(index, [-1]);
}

/**
 * Token embeddings of the packed batch; for VLM decoders (`spec.imageEmbeds`) the inputs
 * `image_embeds` [N, hidden] and `embed_index` [T] put image features in place of placeholders.
 */
export function embedTokens(
  g: GraphBuilder,
  spec: DecoderSpec,
  w: WeightRef,
  inputIds: string,
  dataType: DataTypeCode,
): string {
  const x = g.op(
    'Gather',
    [w(`${spec.weightPrefix}embed_tokens.weight`), inputIds],
    { axis: 0 },
    { name: 'embed' },
  );
  if (!spec.imageEmbeds) return x;
  const images = g.input(DecoderIO.imageEmbeds, dataType, ['N', spec.hiddenSize]);
  const index = g.input(DecoderIO.embedIndex, DataType.INT32, ['T']);
  const rows = g.op(
    'Gather',
    [images, g.op('Max', [index, g.int32([0])])],
    { axis: 0 },
    { name: 'image_rows' },
  );
  const isImage = g.op('Unsqueeze', [g.op('GreaterOrEqual', [index, g.int32([0])]), g.int64([1])]);
  return g.op('Where', [isImage, rows, x], {}, { name: 'merge_embeds' });
}

/** The group's weights read, stacked and quantized here (derived weights without `int4`). */
function quantizedNow(
  derived: DerivedWeights,
  group: string[],
  N: number,
  K: number,
  id: string,
): { B: string; scales: string } {
  const all = new Float32Array(N * K);
  let offset = 0;
  for (const n of group) {
    const part = derived.read(`${n}.weight`);
    all.set(part, offset);
    offset += part.length;
  }
  const { packed, scales } = quantizeInt4(all, N, K);
  return {
    B: derived.add({ name: `${id}.B`, dataType: DataType.UINT8, dims: [N, K / 32, 16] }, packed),
    scales: derived.add(
      { name: `${id}.scales`, dataType: DataType.FLOAT16, dims: [N * (K / 32)] },
      new Uint8Array(scales.buffer),
    ),
  };
}
