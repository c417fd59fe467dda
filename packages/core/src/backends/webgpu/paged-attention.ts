import { SwitchyardError } from '../../errors.js';
import type { DecoderSpec } from '../../model.js';
import type { AttentionOp } from '../../onnx/decoder-recipe.js';
import type { GraphBuilder } from '../../onnx/graph-builder.js';
import { DataType } from '../../onnx/proto.js';
import { ropeTables } from '../../onnx/rope.js';

/**
 * Inputs of paged attention, the webgpu backend's attention op: `com.microsoft.PagedAttention`
 * over KV pools that are graph inputs and are updated in place (the op writes the step's new K/V
 * into the pools, then attends, so a sequence reading a block another one fills in this same step
 * sees it written):
 * - `cumulative_sequence_length` [B+1], `past_seqlens` [B] (tokens already cached per sequence),
 *   `block_table` [B, maxBlocks] (int32);
 * - `key_cache.i` / `value_cache.i` [numBlocks, blockSize, kvHeads, headDim] (fp16, on the device);
 * - `attention_metadata` [2]: the step's longest query and longest key length (CPU), which spares
 *   each attention node a device read-back.
 */
export const PagedAttentionIO = {
  cuSeqlens: 'cumulative_sequence_length',
  pastSeqlens: 'past_seqlens',
  blockTable: 'block_table',
  attentionMetadata: 'attention_metadata',
  keyCache: (i: number) => `key_cache.${i}`,
  valueCache: (i: number) => `value_cache.${i}`,
} as const;

export interface PagedAttentionOptions {
  /** Positions the rotary tables cover (the longest sequence the engine admits). */
  maxPositions: number;
  /** Pass the step's length bounds to PagedAttention in CPU memory (input 16). */
  attentionMetadata: boolean;
}

/**
 * Refuses, before any graph is built, what PagedAttention (ORT 1.29/1.30) does not run right:
 * head sizes that are not a multiple of 8 (the kernel refuses them at the first step), and a
 * sliding window (measured on the H200 through webgpu: logits up to 2.9 off transformers' on the
 * mistral-tiny fixture; not verified on cuda). The cpu backend runs both.
 */
export function checkPagedAttention(spec: DecoderSpec, device: string): void {
  if (spec.headDim % 8 !== 0) {
    throw new SwitchyardError(
      `the ${device} backend's PagedAttention needs a head dimension that is a multiple of 8; this model's is ${spec.headDim}: use --device cpu`,
      'invalid_request',
      'device',
    );
  }
  if (spec.slidingWindow) {
    throw new SwitchyardError(
      `sliding-window attention (sliding_window ${spec.slidingWindow}) does not match transformers through the ${device} backend's PagedAttention yet: use --device cpu`,
      'invalid_request',
      'device',
    );
  }
}

/** PagedAttention with rotary inside (half cos/sin tables as transformers computes the angles). */
export function pagedAttention(options: PagedAttentionOptions): AttentionOp {
  return ({ g, spec, invFreq, dataType }) => {
    const { numHeads: H, numKvHeads: Hkv, headDim: D } = spec;
    // The caches and rotary tables take the graph's half type (fp16, or bf16 on cuda).
    const F16 = dataType;
    const I32 = DataType.INT32;
    const IO = PagedAttentionIO;
    const cuSeqlens = g.input(IO.cuSeqlens, I32, ['B1']);
    const pastSeqlens = g.input(IO.pastSeqlens, I32, ['B']);
    const blockTable = g.input(IO.blockTable, I32, ['B', 'max_blocks']);
    const metadata = options.attentionMetadata ? g.input(IO.attentionMetadata, I32, [2]) : '';
    const n = options.maxPositions;
    const { cos, sin } = ropeTables(invFreq, n);
    const cosCache = g.float16(cos, [n, D / 2], 'rope_cos_cache', F16);
    const sinCache = g.float16(sin, [n, D / 2], 'rope_sin_cache', F16);
    // transformers' sliding window keeps the last `w` positions, the token itself included;
    // PagedAttention's local window counts the positions before it.
    const window: Record<string, number> = spec.slidingWindow
      ? { local_window_size: spec.slidingWindow - 1 }
      : {};
    return (layer, q, k, v) => {
      const keyCache = g.input(IO.keyCache(layer), F16, ['num_blocks', 'block_size', Hkv, D]);
      const valueCache = g.input(IO.valueCache(layer), F16, ['num_blocks', 'block_size', Hkv, D]);
      const inputs = [q, k, v, keyCache, valueCache, cuSeqlens, pastSeqlens, blockTable, cosCache, sinCache];
      if (metadata) inputs.push('', '', '', '', '', '', metadata);
      return g.op(
        'PagedAttention',
        inputs,
        {
          num_heads: H,
          kv_num_heads: Hkv,
          scale: { float: 1 / Math.sqrt(D) },
          do_rotary: 1,
          rotary_interleaved: 0,
          ...window,
        },
        { domain: 'com.microsoft', name: 'paged_attention' },
      );
    };
  };
}

/** A graph whose outputs are the zeroed KV pools, run once with outputs left on the device. */
export function buildKvPoolGraph(g: GraphBuilder, numLayers: number): void {
  const shape = g.input('pool_shape', DataType.INT64, [4]);
  for (let i = 0; i < numLayers; i++) {
    for (const name of [PagedAttentionIO.keyCache(i), PagedAttentionIO.valueCache(i)]) {
      const zeros = g.op('ConstantOfShape', [shape], {
        value: { tensor: { dataType: DataType.FLOAT16, dims: [1], raw: new Uint8Array(2) } },
      });
      g.output(zeros, name, DataType.FLOAT16, ['num_blocks', 'block_size', 'kv_heads', 'head_dim']);
    }
  }
}
