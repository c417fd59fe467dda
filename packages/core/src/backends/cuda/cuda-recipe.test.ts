import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpoint } from '../../loader/checkpoint.js';
import { float32ToBfloat16, readTensorF32 } from '../../loader/safetensors.js';
import { llamaFamilyDecoder } from '../../models/llama-family.js';
import { buildDecoder, DecoderIO } from '../../onnx/decoder-recipe.js';
import { GraphBuilder } from '../../onnx/graph-builder.js';
import { cachedGraph } from '../../onnx/graph-cache.js';
import { DataType, encodeModel } from '../../onnx/proto.js';
import { fixture, fixtureTitle } from '../../testing/fixtures.js';
import { privateGraphCache } from '../../testing/vit-reference.js';
import { PagedAttentionIO } from '../webgpu/paged-attention.js';
import { type CudaRecipeOptions, cudaRecipe } from './cuda-executor.js';

/**
 * The cuda graph cannot run here (PagedAttention has no CPU kernel): these tests pin what the
 * executor binds for each dtype. Its numbers are checked on the GPU (scripts/gpu/cuda-parity.mjs).
 */
const fx = fixture('qwen2-tiny');
const base: CudaRecipeOptions = {
  dtype: 'float16',
  maxPositions: 64,
  attentionMetadata: true,
  linear: 'matmul',
  fuseProjections: true,
  fuseNorms: true,
  argmaxChunks: 128,
};

describe.skipIf(fx.missing)(fixtureTitle(fx, 'the cuda decoder graph'), () => {
  privateGraphCache();
  const build = (options: Partial<CudaRecipeOptions>) => {
    const ckpt = Checkpoint.open(fx.dir);
    const spec = llamaFamilyDecoder(ckpt.textConfig, { qkvBias: true, oBias: false });
    const g = new GraphBuilder();
    buildDecoder(g, spec, (n) => n, cudaRecipe({ ...base, ...options }));
    return { g, spec, ckpt };
  };

  it.each([
    ['float16', DataType.FLOAT16],
    ['bfloat16', DataType.BFLOAT16],
  ] as const)('runs %s throughout: KV pools, rotary tables, activations; logits fp32', (dtype, code) => {
    const { g, spec } = build({ dtype });
    const inputs = new Map(g.inputs.map((i) => [i.name, i]));
    for (let l = 0; l < spec.numLayers; l++) {
      expect(inputs.get(PagedAttentionIO.keyCache(l))?.dataType).toBe(code);
      expect(inputs.get(PagedAttentionIO.valueCache(l))?.dataType).toBe(code);
    }
    const tables = g.initializers.filter((t) => t.name.startsWith('rope_'));
    expect(tables.map((t) => t.dataType)).toEqual([code, code]);
    expect(g.nodes.find((n) => n.op === 'Cast')?.attrs).toMatchObject({ to: DataType.FLOAT });
    expect(g.outputs.find((o) => o.name === DecoderIO.logits)?.dataType).toBe(DataType.FLOAT);
    expect(g.nodes.filter((n) => n.op === 'PagedAttention')).toHaveLength(spec.numLayers);
    expect(encodeModel(g.build({ '': 21, 'com.microsoft': 1 })).length).toBeGreaterThan(1000);
  });

  it('stores weights as bf16, rounded to nearest even, when the checkpoint holds another dtype', () => {
    const ckpt = Checkpoint.open(fx.dir);
    const name = 'model.embed_tokens.weight';
    const graph = cachedGraph(
      ckpt,
      'bf16-probe',
      { v: 1 },
      (g, w) => g.output(w(name), 'out', DataType.BFLOAT16, []),
      'bfloat16',
    );
    expect(graph.externalDataFolder).toBeUndefined();
    const want = float32ToBfloat16(readTensorF32(ckpt.tensor(name)));
    const bytes = readFileSync(join(graph.path, '..', 'weights.bin'));
    expect(new Uint16Array(bytes.buffer, bytes.byteOffset, want.length)).toEqual(want);
  });
});

describe('float32ToBfloat16', () => {
  it('rounds to nearest even like torch, keeping infinities and NaN', () => {
    const bits = (v: number) => float32ToBfloat16(Float32Array.of(v))[0];
    expect(bits(1)).toBe(0x3f80);
    expect(bits(-2)).toBe(0xc000);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
    expect(bits(1 + 2 ** -8)).toBe(0x3f80);
    // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up to even.
    expect(bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(bits(1 + 2 ** -8 + 2 ** -12)).toBe(0x3f81);
    expect(bits(Number.POSITIVE_INFINITY)).toBe(0x7f80);
    expect(bits(Number.NEGATIVE_INFINITY)).toBe(0xff80);
    expect(bits(Number.NaN) & 0x7fc0).toBe(0x7fc0);
    expect(bits(3.4e38)).toBe(0x7f80); // past bf16's largest finite value: rounds to infinity
  });
});
