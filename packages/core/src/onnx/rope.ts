import type { RopeSpec } from '../model.js';
import type { GraphBuilder } from './graph-builder.js';
import { DataType } from './proto.js';

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

/** cos/sin tables [positions, D/2] of RoPE for positions 0..n-1 (fp32 angles, as transformers). */
export function ropeTables(invFreq: Float32Array, n: number): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const cos = new Float32Array(n * half);
  const sin = new Float32Array(n * half);
  for (let pos = 0; pos < n; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * invFreq[i]);
      cos[pos * half + i] = Math.cos(angle);
      sin[pos * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/**
 * RoPE in the graph for the batch's `positions` [T] (int32): returns `apply(x, heads)`, which
 * rotates [T, heads·D] rows (rotate_half layout) and returns [T, heads, D].
 */
export function ropeFromPositions(
  g: GraphBuilder,
  positions: string,
  invFreq: Float32Array,
): (x: string, heads: number) => string {
  const D = invFreq.length * 2;
  const inv = g.float32(invFreq, [1, D / 2]);
  const posF = g.op('Cast', [g.op('Unsqueeze', [positions, g.int64([1])])], { to: DataType.FLOAT });
  const freqs = g.op('Mul', [posF, inv]);
  const emb = g.op('Concat', [freqs, freqs], { axis: -1 });
  const cos = g.op('Unsqueeze', [g.op('Cos', [emb]), g.int64([1])], {}, { name: 'rope_cos' });
  const sin = g.op('Unsqueeze', [g.op('Sin', [emb]), g.int64([1])], {}, { name: 'rope_sin' });
  const half = g.int64([D / 2]);
  return (x, heads) => {
    const x3 = g.reshape(x, [-1, heads, D]);
    const x1 = g.op('Slice', [x3, g.int64([0]), half, g.int64([-1])]);
    const x2 = g.op('Slice', [x3, half, g.int64([D]), g.int64([-1])]);
    const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
    return g.op('Add', [g.op('Mul', [x3, cos]), g.op('Mul', [rotated, sin])], {}, { name: 'rope' });
  };
}
