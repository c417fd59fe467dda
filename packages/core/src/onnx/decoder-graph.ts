import type { DecoderSpec, RopeSpec } from '../model.js';
import type { GraphBuilder } from './graph-builder.js';
import { DataType, type DataTypeCode } from './proto.js';
import type { WeightRef } from './weights.js';

/**
 * Input and output names of the decoder graph. One run processes a packed batch of T new tokens
 * from B sequences over the paged KV layout:
 * - `input_ids` [T], `position_ids` [T];
 * - `past_key.i` / `past_value.i` [P, Hkv·D]: the cached K/V the batch attends to, gathered from
 *   the pool by the executor (all sequences' context, concatenated);
 * - attention runs per group of sequences, padded within the group: group 0 holds the sequences
 *   with one new token (decode), group 1 the others (prefill chunks), so one long prefill does not
 *   pad every decode to its length. For each group g:
 *   - `kv_index.g` [B·Lk]: per sequence, the rows of concat(past, new) forming its keys in
 *     position order, padded to the group's longest Lk;
 *   - `q_index.g` [B·Lq]: per sequence, the rows of the packed tokens forming its queries, padded;
 *   - `attn_bias.g` [B, 1, 1, Lq, Lk]: 0 where a query sees a key (causal), else -1e9;
 *   (an empty group is one fully masked dummy sequence);
 * - `out_index` [T]: where each packed token's attention output sits in concat(group 0's padded
 *   [B·Lq] rows, group 1's);
 * - `sample_index` [S]: the packed rows whose logits are wanted;
 * - with `spec.imageEmbeds`: `image_embeds` [N, hidden] and `embed_index` [T] (row of
 *   `image_embeds` for each packed token, -1 for a text token): image features replace the token
 *   embeddings at placeholder positions, so images and text batch together.
 * Outputs: `logits` [S, V] and `present_key.i` / `present_value.i` [T, Hkv·D] (the new tokens'
 * K after RoPE and V), which the executor writes into the pool at the tokens' slots.
 */
export const DecoderIO = {
  inputIds: 'input_ids',
  positionIds: 'position_ids',
  kvIndex: (group: number) => `kv_index.${group}`,
  qIndex: (group: number) => `q_index.${group}`,
  attnBias: (group: number) => `attn_bias.${group}`,
  outIndex: 'out_index',
  sampleIndex: 'sample_index',
  imageEmbeds: 'image_embeds',
  embedIndex: 'embed_index',
  pastKey: (i: number) => `past_key.${i}`,
  pastValue: (i: number) => `past_value.${i}`,
  presentKey: (i: number) => `present_key.${i}`,
  presentValue: (i: number) => `present_value.${i}`,
  logits: 'logits',
} as const;

/** Emits a Llama-family decoder (RMSNorm, RoPE, GQA, SwiGLU) in fp32 with standard ONNX ops. */
export function buildDecoderGraph(g: GraphBuilder, spec: DecoderSpec, w: WeightRef): void {
  const { numHeads: H, numKvHeads: Hkv, headDim: D, vocabSize } = spec;
  const group = H / Hkv;
  const p = spec.weightPrefix;
  const F = DataType.FLOAT;
  const I32 = DataType.INT32;

  const inputIds = g.input(DecoderIO.inputIds, I32, ['T']);
  const positions = g.input(DecoderIO.positionIds, I32, ['T']);
  const outIndex = g.input(DecoderIO.outIndex, I32, ['T']);
  const sampleIndex = g.input(DecoderIO.sampleIndex, I32, ['S']);
  const shape = (...parts: (number[] | string)[]): string =>
    g.op(
      'Concat',
      parts.map((x) => (typeof x === 'string' ? x : g.int64(x))),
      { axis: 0 },
      { name: 'shape' },
    );
  const scale = g.float32([1 / Math.sqrt(D)], []);
  const groups = [0, 1].map((i) =>
    g.within(`group${i}`, () => {
      const bias = g.input(DecoderIO.attnBias(i), F, [`B${i}`, 1, 1, `Lq${i}`, `Lk${i}`]);
      const biasShape = g.op('Shape', [bias]);
      const lq = g.op('Slice', [biasShape, g.int64([3]), g.int64([4])], {}, { name: 'lq' });
      const lk = g.op('Slice', [biasShape, g.int64([4]), g.int64([5])], {}, { name: 'lk' });
      return {
        name: `group${i}`,
        kvIndex: g.input(DecoderIO.kvIndex(i), I32, [`BLk${i}`]),
        qIndex: g.input(DecoderIO.qIndex(i), I32, [`BLq${i}`]),
        bias,
        kvShape: shape([-1], lk, [Hkv, D]),
        qShape: shape([-1], lq, [Hkv, group, D]),
        scoresShape: shape([0, Hkv, group], lq, lk),
        probsShape: shape([0, Hkv, -1], lk),
        ctxShape: shape([0, Hkv, group], lq, [D]),
      };
    }),
  );
  type Group = (typeof groups)[number];

  /** Attention of one group's padded sequences: [B·Lq, H·D] rows. */
  const attend = (grp: Group, qRot: string, kAll: string, vAll: string): string =>
    g.within(grp.name, () => {
      // Keys per sequence: [B, Hkv, D, Lk]; values: [B, Hkv, Lk, D]
      const kB = g.transpose(
        g.op('Reshape', [g.op('Gather', [kAll, grp.kvIndex], { axis: 0 }), grp.kvShape]),
        [0, 2, 3, 1],
      );
      const vB = g.transpose(
        g.op('Reshape', [g.op('Gather', [vAll, grp.kvIndex], { axis: 0 }), grp.kvShape]),
        [0, 2, 1, 3],
      );
      // Queries per sequence, grouped by KV head: [B, Hkv, group·Lq, D]
      const qPad = g.op('Gather', [qRot, grp.qIndex], { axis: 0 });
      const qB = g.reshape(g.transpose(g.op('Reshape', [qPad, grp.qShape]), [0, 2, 3, 1, 4]), [
        0,
        Hkv,
        -1,
        D,
      ]);
      const scores = g.op('Reshape', [g.op('MatMul', [qB, kB], {}, { name: 'scores' }), grp.scoresShape]);
      const scaled = g.op('Add', [g.op('Mul', [scores, scale]), grp.bias]);
      const probs = g.op('Reshape', [g.op('Softmax', [scaled], { axis: -1 }), grp.probsShape]);
      const ctx = g.op('Reshape', [g.op('MatMul', [probs, vB], {}, { name: 'context' }), grp.ctxShape]);
      return g.reshape(g.transpose(ctx, [0, 3, 1, 2, 4]), [-1, H * D]);
    });

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

  // RoPE tables for this batch: [T, 1, D]
  const invFreq = g.float32(ropeInvFreq(spec.rope, D), [1, D / 2]);
  const posF = g.op('Cast', [g.op('Unsqueeze', [positions, g.int64([1])])], { to: F });
  const freqs = g.op('Mul', [posF, invFreq]);
  const emb = g.op('Concat', [freqs, freqs], { axis: -1 });
  const cos = g.op('Unsqueeze', [g.op('Cos', [emb]), g.int64([1])], {}, { name: 'rope_cos' });
  const sin = g.op('Unsqueeze', [g.op('Sin', [emb]), g.int64([1])], {}, { name: 'rope_sin' });
  const half = g.int64([D / 2]);
  const rope = (x: string, heads: number): string => {
    const x3 = g.reshape(x, [-1, heads, D]);
    const x1 = g.op('Slice', [x3, g.int64([0]), half, g.int64([-1])]);
    const x2 = g.op('Slice', [x3, half, g.int64([D]), g.int64([-1])]);
    const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
    return g.op('Add', [g.op('Mul', [x3, cos]), g.op('Mul', [rotated, sin])], {}, { name: 'rope' });
  };

  let x = embedTokens(g, spec, w, inputIds, F);
  for (let i = 0; i < spec.numLayers; i++) {
    g.within(`layers.${i}`, () => {
      const pre = `${p}layers.${i}`;
      const h = rmsNorm(x, `${pre}.input_layernorm.weight`);
      let q = linear(h, `${pre}.self_attn.q_proj`, spec.qkvBias);
      let k = linear(h, `${pre}.self_attn.k_proj`, spec.qkvBias);
      const v = linear(h, `${pre}.self_attn.v_proj`, spec.qkvBias);
      if (spec.qkNorm) {
        q = rmsNorm(g.reshape(q, [-1, H, D]), `${pre}.self_attn.q_norm.weight`);
        k = rmsNorm(g.reshape(k, [-1, Hkv, D]), `${pre}.self_attn.k_norm.weight`);
      }
      const qRot = g.reshape(rope(q, H), [-1, H * D]);
      const kRot = g.reshape(rope(k, Hkv), [-1, Hkv * D]);
      g.output(kRot, DecoderIO.presentKey(i), F, ['T', Hkv * D]);
      g.output(v, DecoderIO.presentValue(i), F, ['T', Hkv * D]);

      const pastK = g.input(DecoderIO.pastKey(i), F, ['P', Hkv * D]);
      const pastV = g.input(DecoderIO.pastValue(i), F, ['P', Hkv * D]);
      const kAll = g.op('Concat', [pastK, kRot], { axis: 0 });
      const vAll = g.op('Concat', [pastV, v], { axis: 0 });
      const padded = g.op(
        'Concat',
        groups.map((grp) => attend(grp, qRot, kAll, vAll)),
        { axis: 0 },
      );
      const attnOut = g.op('Gather', [padded, outIndex], { axis: 0 });
      x = g.op('Add', [x, linear(attnOut, `${pre}.self_attn.o_proj`, spec.oBias)], {}, { name: 'residual' });

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
  const logits = g.op('Gemm', [normed, w(head)], { transB: 1 }, { name: 'lm_head' });
  g.output(logits, DecoderIO.logits, F, ['S', vocabSize]);
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

/** Inverse frequencies of RoPE, as transformers computes them (float32), with llama3 scaling. */
export function ropeInvFreq(rope: RopeSpec, headDim: number): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / rope.theta ** ((2 * i) / headDim);
  if (rope.type === 'llama3') {
    const factor = rope.factor ?? 8;
    const low = rope.lowFreqFactor ?? 1;
    const high = rope.highFreqFactor ?? 4;
    const oldCtx = rope.originalMaxPositionEmbeddings ?? 8192;
    const lowWavelen = oldCtx / low;
    const highWavelen = oldCtx / high;
    for (let i = 0; i < half; i++) {
      const f = inv[i];
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) inv[i] = f / factor;
      else if (wavelen >= highWavelen) {
        const smooth = (oldCtx / wavelen - low) / (high - low);
        inv[i] = (1 - smooth) * (f / factor) + smooth * f;
      }
    }
  }
  return inv;
}
