import type { DecoderSpec } from '../model.js';
import { ropeInvFreq, type WeightRef } from './decoder-graph.js';
import type { GraphBuilder } from './graph-builder.js';
import { DataType } from './proto.js';

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
  imageEmbeds: 'image_embeds',
  embedIndex: 'embed_index',
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
}

/** Emits a Llama-family decoder in fp16 whose attention is PagedAttention with rotary inside. */
export function buildPagedDecoderGraph(
  g: GraphBuilder,
  spec: DecoderSpec,
  w: WeightRef,
  options: PagedDecoderOptions,
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

  const linear = (x: string, weight: string, hasBias: boolean): string => {
    const inputs = [x, w(`${weight}.weight`)];
    if (hasBias) inputs.push(w(`${weight}.bias`));
    return g.op('Gemm', inputs, { transB: 1 }, { name: weight.split('.').pop() });
  };
  const rmsNorm = (x: string, weight: string): string =>
    g.op(
      'SimplifiedLayerNormalization',
      [x, w(weight)],
      { axis: -1, epsilon: { float: spec.rmsNormEps } },
      { name: 'rmsnorm' },
    );

  let x = g.op('Gather', [w(`${p}embed_tokens.weight`), inputIds], { axis: 0 }, { name: 'embed' });
  if (spec.imageEmbeds) {
    const images = g.input(PagedDecoderIO.imageEmbeds, F16, ['N', hiddenSize]);
    const index = g.input(PagedDecoderIO.embedIndex, I32, ['T']);
    const rows = g.op(
      'Gather',
      [images, g.op('Max', [index, g.int32([0])])],
      { axis: 0 },
      { name: 'image_rows' },
    );
    const isImage = g.op('Unsqueeze', [g.op('GreaterOrEqual', [index, g.int32([0])]), g.int64([1])]);
    x = g.op('Where', [isImage, rows, x], {}, { name: 'merge_embeds' });
  }
  for (let i = 0; i < spec.numLayers; i++) {
    g.within(`layers.${i}`, () => {
      const pre = `${p}layers.${i}`;
      const h = rmsNorm(x, `${pre}.input_layernorm.weight`);
      let q = linear(h, `${pre}.self_attn.q_proj`, spec.qkvBias);
      let k = linear(h, `${pre}.self_attn.k_proj`, spec.qkvBias);
      const v = linear(h, `${pre}.self_attn.v_proj`, spec.qkvBias);
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
      x = g.op('Add', [x, linear(attn, `${pre}.self_attn.o_proj`, spec.oBias)], {}, { name: 'residual' });
      const h2 = rmsNorm(x, `${pre}.post_attention_layernorm.weight`);
      const gate = linear(h2, `${pre}.mlp.gate_proj`, spec.mlpBias);
      const up = linear(h2, `${pre}.mlp.up_proj`, spec.mlpBias);
      const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up], {}, { name: 'swiglu' });
      x = g.op('Add', [x, linear(act, `${pre}.mlp.down_proj`, spec.mlpBias)], {}, { name: 'residual' });
    });
  }
  const picked = g.op('Gather', [x, sampleIndex], { axis: 0 }, { name: 'pick_sampled' });
  const normed = rmsNorm(picked, `${p}norm.weight`);
  const head = spec.tieWordEmbeddings ? `${p}embed_tokens.weight` : spec.lmHeadName;
  const logits = g.op('Cast', [g.op('Gemm', [normed, w(head)], { transB: 1 }, { name: 'lm_head' })], {
    to: DataType.FLOAT,
  });
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
