import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { rowArgMax } from '../../onnx/decoder-recipe.js';
import { GraphBuilder } from '../../onnx/graph-builder.js';
import { DataType, encodeModel } from '../../onnx/proto.js';

/** The chunked argmax the cuda decoder uses for `next_tokens`, against a plain JS argmax. */
async function argmaxSession(V: number, chunks: number): Promise<ort.InferenceSession> {
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, ['S', V]);
  g.output(rowArgMax(g, x, V, chunks), 'idx', DataType.INT64, ['S']);
  return ort.InferenceSession.create(encodeModel(g.build({ '': 21 }, 'argmax')));
}

function jsArgmax(data: Float32Array, S: number, V: number): bigint[] {
  const out: bigint[] = [];
  for (let s = 0; s < S; s++) {
    let best = 0;
    for (let v = 1; v < V; v++) if (data[s * V + v] > data[s * V + best]) best = v;
    out.push(BigInt(best));
  }
  return out;
}

describe('rowArgMax', () => {
  for (const [V, chunks] of [
    [1000, 0],
    [1024, 128],
    [1000, 128],
    [37, 8],
  ] as const) {
    it(`V=${V}, ${chunks || 'no'} chunks: the first maximum of every row, ties and -inf included`, async () => {
      const session = await argmaxSession(V, chunks);
      const S = 7;
      let seed = V * 31 + chunks;
      const rand = () => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed / 2 ** 31;
      };
      const data = Float32Array.from({ length: S * V }, () => Math.round(rand() * 50) - 60);
      data[0 * V + V - 1] = 100; // max in the last column (a padded chunk when V % chunks ≠ 0)
      data[1 * V + 3] = 100; // ties: the first one wins
      data[1 * V + V - 2] = 100;
      data.fill(Number.NEGATIVE_INFINITY, 2 * V, 3 * V - 1); // all -inf but the last
      data[3 * V] = 100; // first column
      for (let rep = 0; rep < 3; rep++) {
        const out = await session.run({ x: new ort.Tensor('float32', data, [S, V]) });
        expect([...(out.idx.data as BigInt64Array)]).toEqual(jsArgmax(data, S, V));
        for (let i = 0; i < data.length; i++) if (rand() < 0.05) data[i] = rand() * 200 - 100;
      }
      await session.release();
    });
  }
});
