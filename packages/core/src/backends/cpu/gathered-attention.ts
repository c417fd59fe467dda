import type { AttentionOp } from '../../onnx/decoder-recipe.js';
import { DataType } from '../../onnx/proto.js';
import { ropeFromPositions } from '../../onnx/rope.js';

/**
 * Inputs and outputs of gathered attention, the CPU backend's attention op over a KV pool kept in
 * host memory. One run processes a packed batch of T new tokens from B sequences:
 * - `position_ids` [T] (RoPE runs in the graph);
 * - `past_key.i` / `past_value.i` [P, Hkv·D]: the cached K/V the batch attends to, gathered from
 *   the pool by the executor (all sequences' context, concatenated);
 * - attention runs per group of sequences, padded within the group: group 0 holds the sequences
 *   with one new token (decode), group 1 the others (prefill chunks), so one long prefill does not
 *   pad every decode to its length. For each group g:
 *   - `kv_index.g` [B·Lk]: per sequence, the rows of concat(past, new) forming its keys in
 *     position order, padded to the group's longest Lk — a row of another sequence's new K/V when
 *     it shares that block and computes it in this same step;
 *   - `q_index.g` [B·Lq]: per sequence, the rows of the packed tokens forming its queries, padded;
 *   - `attn_bias.g` [B, 1, 1, Lq, Lk]: 0 where a query sees a key (causal, and within the sliding
 *     window when the model has one), else -1e9; an empty group is one fully masked dummy;
 * - `out_index` [T]: where each packed token's attention output sits in concat(group 0's padded
 *   [B·Lq] rows, group 1's).
 * Outputs `present_key.i` / `present_value.i` [T, Hkv·D] (the new tokens' K after RoPE, and V),
 * which the executor writes into the pool at the tokens' slots.
 */
export const GatheredAttentionIO = {
  positionIds: 'position_ids',
  kvIndex: (group: number) => `kv_index.${group}`,
  qIndex: (group: number) => `q_index.${group}`,
  attnBias: (group: number) => `attn_bias.${group}`,
  outIndex: 'out_index',
  pastKey: (i: number) => `past_key.${i}`,
  pastValue: (i: number) => `past_value.${i}`,
  presentKey: (i: number) => `present_key.${i}`,
  presentValue: (i: number) => `present_value.${i}`,
} as const;

/** Gathered attention (standard ONNX ops: Gather, MatMul, Softmax), in the graph's dtype. */
export const gatheredAttention: AttentionOp = ({ g, spec, dataType, invFreq }) => {
  const { numHeads: H, numKvHeads: Hkv, headDim: D } = spec;
  const group = H / Hkv;
  const I32 = DataType.INT32;
  const IO = GatheredAttentionIO;
  const positions = g.input(IO.positionIds, I32, ['T']);
  const outIndex = g.input(IO.outIndex, I32, ['T']);
  const rope = ropeFromPositions(g, positions, invFreq);
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
      const bias = g.input(IO.attnBias(i), dataType, [`B${i}`, 1, 1, `Lq${i}`, `Lk${i}`]);
      const biasShape = g.op('Shape', [bias]);
      const lq = g.op('Slice', [biasShape, g.int64([3]), g.int64([4])], {}, { name: 'lq' });
      const lk = g.op('Slice', [biasShape, g.int64([4]), g.int64([5])], {}, { name: 'lk' });
      return {
        name: `group${i}`,
        kvIndex: g.input(IO.kvIndex(i), I32, [`BLk${i}`]),
        qIndex: g.input(IO.qIndex(i), I32, [`BLq${i}`]),
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
  const attendGroup = (grp: Group, qRot: string, kAll: string, vAll: string): string =>
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

  return (layer, q, k, v) => {
    const qRot = g.reshape(rope(q, H), [-1, H * D]);
    const kRot = g.reshape(rope(k, Hkv), [-1, Hkv * D]);
    g.output(kRot, IO.presentKey(layer), dataType, ['T', Hkv * D]);
    g.output(v, IO.presentValue(layer), dataType, ['T', Hkv * D]);
    const pastK = g.input(IO.pastKey(layer), dataType, ['P', Hkv * D]);
    const pastV = g.input(IO.pastValue(layer), dataType, ['P', Hkv * D]);
    const kAll = g.op('Concat', [pastK, kRot], { axis: 0 });
    const vAll = g.op('Concat', [pastV, v], { axis: 0 });
    const padded = g.op(
      'Concat',
      groups.map((grp) => attendGroup(grp, qRot, kAll, vAll)),
      { axis: 0 },
    );
    return g.op('Gather', [padded, outIndex], { axis: 0 });
  };
};
