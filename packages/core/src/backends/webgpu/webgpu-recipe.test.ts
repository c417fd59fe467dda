import { describe, expect, it } from 'vitest';
import { Checkpoint } from '../../loader/checkpoint.js';
import { readTensorF32 } from '../../loader/safetensors.js';
import { llamaFamilyDecoder } from '../../models/llama-family.js';
import { buildDecoder, DecoderIO } from '../../onnx/decoder-recipe.js';
import { GraphBuilder } from '../../onnx/graph-builder.js';
import { DataType, encodeModel } from '../../onnx/proto.js';
import { dequantizeInt4 } from '../../onnx/quantize.js';
import { fixture, fixtureTitle } from '../../testing/fixtures.js';
import { buildKvPoolGraph, PagedAttentionIO as PagedDecoderIO } from './paged-attention.js';
import { webGpuRecipe } from './webgpu-executor.js';

type PagedDecoderOptions = Parameters<typeof webGpuRecipe>[0];

/**
 * The GPU graph cannot run here (PagedAttention has no CPU kernel); these tests pin its structure
 * — what the webgpu executor feeds and reads — and the int4 weights it derives. Its numbers are
 * checked on the GPU machine (docs/benchmarks.md).
 */
const fx = fixture('qwen2-tiny');
const base: PagedDecoderOptions = {
  maxPositions: 64,
  attentionMetadata: true,
  linear: 'matmul',
  fuseProjections: true,
  fuseNorms: true,
};

describe.skipIf(fx.missing)(fixtureTitle(fx, 'the paged fp16 decoder graph'), () => {
  const build = (options: Partial<PagedDecoderOptions>) => {
    const ckpt = Checkpoint.open(fx.dir);
    const spec = llamaFamilyDecoder(ckpt.textConfig, { qkvBias: true, oBias: false });
    const g = new GraphBuilder();
    const derivedAdded: { name: string; dims: number[]; bytes: Uint8Array }[] = [];
    buildDecoder(
      g,
      spec,
      (n) => n,
      webGpuRecipe(
        { ...base, ...options },
        {
          read: (n) => readTensorF32(ckpt.tensor(n)),
          add: (def, bytes) => {
            derivedAdded.push({ name: def.name, dims: def.dims, bytes });
            return def.name;
          },
        },
      ),
    );
    return { g, spec, derivedAdded, ckpt };
  };

  it("takes each layer's KV pools as fp16 inputs and attends with PagedAttention in place", () => {
    const { g, spec } = build({});
    const inputs = new Map(g.inputs.map((i) => [i.name, i]));
    for (let l = 0; l < spec.numLayers; l++) {
      expect(inputs.get(PagedDecoderIO.keyCache(l))).toMatchObject({
        dataType: DataType.FLOAT16,
        shape: ['num_blocks', 'block_size', 2, 16],
      });
      expect(inputs.has(PagedDecoderIO.valueCache(l))).toBe(true);
    }
    const attention = g.nodes.filter((n) => n.op === 'PagedAttention');
    expect(attention).toHaveLength(spec.numLayers);
    for (const node of attention) {
      expect(node.domain).toBe('com.microsoft');
      expect(node.attrs).toMatchObject({ num_heads: 4, kv_num_heads: 2, do_rotary: 1 });
      // Cache outputs omitted: the op writes the new K/V into its cache inputs.
      expect(node.outputs).toHaveLength(1);
      expect(node.inputs[16]).toBe(PagedDecoderIO.attentionMetadata);
    }
    expect(g.outputs.map((o) => o.name)).toEqual([DecoderIO.logits, DecoderIO.nextTokens]);
    expect(encodeModel(g.build({ '': 21, 'com.microsoft': 1 })).length).toBeGreaterThan(1000);
  });

  it('fuses q/k/v and gate/up into one projection each, and residual + RMSNorm', () => {
    const fused = build({});
    const unfused = build({ fuseProjections: false, fuseNorms: false });
    const count = (g: GraphBuilder, op: string) => g.nodes.filter((n) => n.op === op).length;
    expect(count(fused.g, 'MatMul')).toBe(4 * fused.spec.numLayers + 1);
    expect(count(unfused.g, 'MatMul')).toBe(7 * unfused.spec.numLayers + 1);
    expect(count(fused.g, 'SkipSimplifiedLayerNormalization')).toBe(2 * fused.spec.numLayers);
  });

  it("passes a model's sliding window to PagedAttention as the positions before the token", () => {
    const ckpt = Checkpoint.open(fx.dir);
    const spec = {
      ...llamaFamilyDecoder(ckpt.textConfig, { qkvBias: true, oBias: false }),
      slidingWindow: 8,
    };
    const g = new GraphBuilder();
    buildDecoder(g, spec, (n) => n, webGpuRecipe(base));
    const attention = g.nodes.filter((n) => n.op === 'PagedAttention');
    expect(attention.length).toBe(spec.numLayers);
    for (const node of attention) expect(node.attrs).toMatchObject({ local_window_size: 7 });
    const full = build({}).g.nodes.filter((n) => n.op === 'PagedAttention');
    for (const node of full) expect(node.attrs).not.toHaveProperty('local_window_size');
  });

  it('quantizes the linear layers to int4 in MatMulNBits layout, the head stays fp16', () => {
    const { g, spec, derivedAdded, ckpt } = build({ linear: 'int4' });
    const nbits = g.nodes.filter((n) => n.op === 'MatMulNBits');
    expect(nbits).toHaveLength(4 * spec.numLayers);
    const qkv = nbits[0];
    expect(qkv.attrs).toMatchObject({ K: 64, N: 64 + 32 + 32, bits: 4, block_size: 32 });
    const B = derivedAdded.find((d) => d.name === qkv.inputs[1])!;
    const S = derivedAdded.find((d) => d.name === qkv.inputs[2])!;
    expect(B.dims).toEqual([128, 2, 16]);
    // The dequantized q rows are the checkpoint's q_proj within half a quantization step.
    const q = readTensorF32(ckpt.tensor('model.layers.0.self_attn.q_proj.weight'));
    const back = dequantizeInt4(
      B.bytes,
      new Uint16Array(S.bytes.buffer, S.bytes.byteOffset, S.bytes.length / 2),
      128,
      64,
    );
    const maxAbs = Math.max(...q.map(Math.abs));
    for (let i = 0; i < q.length; i++)
      expect(Math.abs(back[i] - q[i])).toBeLessThanOrEqual(maxAbs / 14 + 1e-3);
    expect(g.nodes.some((n) => n.name.includes('lm_head') && n.op === 'MatMul')).toBe(true);
  });
});

describe('the KV pool graph', () => {
  it('outputs zeroed fp16 pools for every layer from one shape input', () => {
    const g = new GraphBuilder();
    buildKvPoolGraph(g, 3);
    expect(g.outputs.map((o) => o.name)).toEqual([
      'key_cache.0',
      'value_cache.0',
      'key_cache.1',
      'value_cache.1',
      'key_cache.2',
      'value_cache.2',
    ]);
    expect(g.nodes.filter((n) => n.op === 'ConstantOfShape')).toHaveLength(6);
    expect(g.inputs).toEqual([{ name: 'pool_shape', dataType: DataType.INT64, shape: [4] }]);
  });
});
