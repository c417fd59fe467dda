import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpoint } from '../loader/checkpoint.js';
import { readTensorF32 } from '../loader/safetensors.js';
import { fixture, fixtureTitle } from '../testing/fixtures.js';
import { privateGraphCache } from '../testing/vit-reference.js';
import { cachedGraph } from './graph-cache.js';
import { quantizeInt4Jobs } from './int4-jobs.js';
import { DataType } from './proto.js';
import { quantizeInt4 } from './quantize.js';

const fx = fixture('qwen2-tiny');
const QKV = ['q_proj', 'k_proj', 'v_proj'].map((p) => `model.layers.0.self_attn.${p}.weight`);

/** The weights stacked by rows and quantized on this thread: what the workers must write. */
function expected(ckpt: Checkpoint, names: string[]) {
  const parts = names.map((n) => readTensorF32(ckpt.tensor(n)));
  const K = ckpt.tensor(names[0]).shape[1];
  const all = Float32Array.from(parts.flatMap((p) => [...p]));
  return { ...quantizeInt4(all, all.length / K, K), N: all.length / K, K };
}

describe.skipIf(fx.missing)(fixtureTitle(fx, 'int4 weights quantized on worker threads'), () => {
  privateGraphCache();

  it('writes what quantizeInt4 gives, at the offsets the graph names', () => {
    const ckpt = Checkpoint.open(fx.dir);
    const want = [expected(ckpt, QKV), expected(ckpt, ['model.layers.0.mlp.down_proj.weight'])];
    const graph = cachedGraph(
      ckpt,
      'int4-probe',
      { v: 1 },
      (g, _w, derived) => {
        const groups = [QKV, ['model.layers.0.mlp.down_proj.weight']];
        groups.forEach((names, i) => {
          const { B, scales } = derived.int4!(names, want[i].N, want[i].K, `probe${i}`);
          g.output(B, B, DataType.UINT8, []);
          g.output(scales, scales, DataType.FLOAT16, []);
        });
      },
      'float16',
      { convertAll: true },
    );
    const bytes = readFileSync(join(graph.path, '..', 'weights.bin'));
    let offset = 0;
    for (const { packed, scales } of want) {
      // Tensors follow each other 64-byte aligned, in the order they were declared.
      expect(bytes.subarray(offset, offset + packed.length)).toEqual(Buffer.from(packed));
      offset = Math.ceil((offset + packed.length) / 64) * 64;
      const s = new Uint8Array(scales.buffer);
      expect(bytes.subarray(offset, offset + s.length)).toEqual(Buffer.from(s));
      offset = Math.ceil((offset + s.length) / 64) * 64;
    }
  });

  it("fails with the worker's message when a job does not fit its tensors", () => {
    const ckpt = Checkpoint.open(fx.dir);
    const dir = mkdtempSync(join(tmpdir(), 'int4-jobs-'));
    try {
      const path = join(dir, 'weights.bin');
      writeFileSync(path, new Uint8Array(0));
      const entry = ckpt.tensor(QKV[0]);
      const [N, K] = entry.shape;
      expect(() =>
        quantizeInt4Jobs([{ parts: [entry], N: N + 1, K, offsetB: 0, offsetScales: 4096 }], path),
      ).toThrow(/int4 quantization failed: .*q_proj\.weight: \d+ values, expected/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
