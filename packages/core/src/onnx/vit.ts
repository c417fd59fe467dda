import { SwitchyardError } from '../errors.js';
import type { RawConfig } from '../loader/checkpoint.js';
import type { GraphBuilder } from './graph-builder.js';
import { DataType } from './proto.js';
import type { WeightRef } from './weights.js';

// The shared layers of ViT vision towers; the towers themselves live in the model packages.

/**
 * Input and output names of the vision graphs: `pixel_values` [N, C, H, W] (N tiles or images, at
 * the tower's fixed image size) → `image_features` [N, L, textHidden] (rows ready to replace the
 * image placeholder embeddings of the text decoder).
 */
export const VisionIO = {
  pixelValues: 'pixel_values',
  imageFeatures: 'image_features',
} as const;

/** Activations the vision towers and projectors use (transformers' ACT2FN names, folded). */
export type VisionAct = 'gelu' | 'gelu_tanh' | 'quick_gelu' | 'relu' | 'silu';

/** What every ViT tower shares (model packages extend it with their own fields). */
export interface VitSpec {
  hiddenSize: number;
  numHeads: number;
  intermediateSize: number;
  /** Layers of the checkpoint's tower (the graph runs only those the feature layer needs). */
  numLayers: number;
  /** [height, width] of the (tile) images the tower takes. */
  imageSize: [number, number];
  /** [height, width] of a patch: the patch Conv's kernel and stride. */
  patchSize: [number, number];
  numChannels: number;
  layerNormEps: number;
  hiddenAct: VisionAct;
  /** Weight-name prefix of the tower, e.g. 'vision_tower.' or 'model.vision_tower.vision_model.'. */
  towerPrefix: string;
  /** Weight-name prefix of the projector, e.g. 'multi_modal_projector.'. */
  projectorPrefix: string;
  projectorAct: VisionAct;
  /** Width of the projector's output (the text model's hidden size). */
  textHiddenSize: number;
  /** Rows of `image_features` per image (tile). */
  tokensPerImage: number;
}

/** The `vision_config` of a VLM config.json (or the config itself for a bare tower). */
export function visionConfig(config: RawConfig): RawConfig {
  return (config.vision_config as RawConfig | undefined) ?? config;
}

/** The ViT fields every tower reads alike from config.json, with the family's defaults. */
export function readVitBasics(
  vc: RawConfig,
  config: RawConfig,
  defaults: {
    hiddenSize: number;
    numHeads: number;
    intermediateSize: number;
    numLayers: number;
    imageSize: number;
    patchSize: number;
    layerNormEps: number;
    hiddenAct: string;
  },
): Omit<VitSpec, 'towerPrefix' | 'projectorPrefix' | 'tokensPerImage'> {
  const text = (config.text_config as RawConfig | undefined) ?? {};
  const hiddenSize = num(vc.hidden_size, defaults.hiddenSize);
  const numHeads = num(vc.num_attention_heads, defaults.numHeads);
  if (hiddenSize % numHeads !== 0) {
    throw new SwitchyardError(
      `vision_config.hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}`,
      'model_load',
    );
  }
  const imageSize = pair(vc.image_size, defaults.imageSize, 'image_size');
  const patchSize = pair(vc.patch_size, defaults.patchSize, 'patch_size');
  if (imageSize[0] % patchSize[0] !== 0 || imageSize[1] % patchSize[1] !== 0) {
    throw new SwitchyardError(
      `vision_config.image_size ${imageSize.join('×')} is not a multiple of patch_size ${patchSize.join('×')}`,
      'model_load',
    );
  }
  return {
    hiddenSize,
    numHeads,
    intermediateSize: num(vc.intermediate_size, defaults.intermediateSize),
    numLayers: num(vc.num_hidden_layers, defaults.numLayers),
    imageSize,
    patchSize,
    numChannels: num(vc.num_channels, 3),
    layerNormEps: num(vc.layer_norm_eps, defaults.layerNormEps),
    hiddenAct: visionAct(vc.hidden_act ?? defaults.hiddenAct, 'vision_config.hidden_act'),
    projectorAct: visionAct(config.projector_hidden_act ?? 'gelu', 'projector_hidden_act'),
    // transformers' LlamaConfig default; 4.x LLaVA configs often leave it out of text_config.
    textHiddenSize: num(text.hidden_size, 4096),
  };
}

function num(v: unknown, fallback: number): number {
  return typeof v === 'number' ? v : fallback;
}

function pair(v: unknown, fallback: number, key: string): [number, number] {
  if (v === undefined || v === null) return [fallback, fallback];
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number')) return [v[0], v[1]];
  throw new SwitchyardError(`vision_config.${key} must be a number or [height, width]`, 'model_load');
}

/** Maps transformers' activation names onto the few the graphs emit. */
function visionAct(name: unknown, key: string): VisionAct {
  switch (name) {
    case 'gelu':
      return 'gelu';
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
    case 'gelu_fast':
      return 'gelu_tanh';
    case 'quick_gelu':
      return 'quick_gelu';
    case 'relu':
      return 'relu';
    case 'silu':
    case 'swish':
      return 'silu';
    default:
      throw new SwitchyardError(
        `${key} '${String(name)}' is not supported; supported: gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, quick_gelu, relu, silu`,
        'model_load',
      );
  }
}

/** `vision_feature_select_strategy`: 'default' (CLS dropped) or 'full'. */
export function readFeatureSelectStrategy(config: RawConfig): 'default' | 'full' {
  const s = config.vision_feature_select_strategy ?? 'default';
  if (s !== 'default' && s !== 'full') {
    throw new SwitchyardError(
      `vision_feature_select_strategy '${String(s)}' is not supported; supported: default, full`,
      'model_load',
    );
  }
  return s;
}

/** A hidden-states index (negative counts from the end of numLayers + 1 states). */
export function resolveFeatureLayer(layer: number, numLayers: number): number {
  const i = layer < 0 ? numLayers + 1 + layer : layer;
  if (i < 0 || i > numLayers) {
    throw new SwitchyardError(
      `vision_feature_layer ${layer} is outside the vision tower's ${numLayers + 1} hidden states`,
      'model_load',
    );
  }
  return i;
}

/**
 * The weight-name prefix under which a module lies, found from the one weight ending in `suffix`
 * (whatever the checkpoint's naming: 4.x 'vision_tower.vision_model.', 5.x 'model.vision_tower.',
 * or 'vision_tower.'); the prefix keeps `suffix` less its last `strip` characters.
 */
export function findWeightPrefix(names: Set<string>, suffix: string, what: string, strip = suffix): string {
  const hits = [...names]
    .filter((n) => n === suffix || n.endsWith(`.${suffix}`))
    .map((n) => n.slice(0, n.length - strip.length));
  if (hits.length === 0) {
    throw new SwitchyardError(
      `the checkpoint has no weight ending in '${suffix}', so ${what} cannot be built`,
      'model_load',
    );
  }
  // Several towers (rare: e.g. an audio one beside it): take the vision one.
  return hits.find((h) => h.includes('vision')) ?? hits[0];
}

/** Patches per image (tile). */
export function numPatches(spec: Pick<VitSpec, 'imageSize' | 'patchSize'>): number {
  return (spec.imageSize[0] / spec.patchSize[0]) * (spec.imageSize[1] / spec.patchSize[1]);
}

/** The `pixel_values` input [N, C, H, W] of a tower graph. */
export function visionInput(g: GraphBuilder, spec: VitSpec): string {
  return g.input(VisionIO.pixelValues, DataType.FLOAT, ['N', spec.numChannels, ...spec.imageSize]);
}

/** Reshapes projected rows to `image_features` [N, L, hidden] and marks it the graph's output. */
export function visionOutput(g: GraphBuilder, rows: string, spec: VitSpec): void {
  const out = g.reshape(rows, [-1, spec.tokensPerImage, spec.textHiddenSize]);
  g.output(out, VisionIO.imageFeatures, DataType.FLOAT, ['N', spec.tokensPerImage, spec.textHiddenSize]);
}

/** The ViT building blocks towers share, over [rows, channels] activations. */
export class VitOps {
  constructor(
    private readonly g: GraphBuilder,
    private readonly w: WeightRef,
    private readonly spec: VitSpec,
  ) {}

  /** Patch Conv (kernel = stride = patch size) → [N, patches, D] in row-major grid order. */
  patchEmbed(pixels: string, conv: string, hasBias: boolean): string {
    const { g, w, spec } = this;
    const inputs = [pixels, w(`${conv}.weight`)];
    if (hasBias) inputs.push(w(`${conv}.bias`));
    const y = g.op(
      'Conv',
      inputs,
      { kernel_shape: spec.patchSize, strides: spec.patchSize, pads: [0, 0, 0, 0] },
      { name: 'patch_embedding' },
    );
    return g.transpose(g.reshape(y, [0, spec.hiddenSize, -1]), [0, 2, 1]);
  }

  /**
   * Concatenates a [1, 1, D] CLS embedding, broadcast over the batch, before [N, P, D] patches.
   * The batch comes from the patches themselves (their first row × 0, plus the CLS row), with no
   * op that has a CPU-side input or output: ORT 1.29's CUDA plugin provider crashed (SIGSEGV) on
   * Shape (CPU-side output; onnxruntime#28329) and on Slice (CPU-side starts/ends) in the H200
   * bisection (scripts/gpu/cuda-bisect-tower.mjs); Gather's indices live on the device. Exact for
   * finite patch embeddings.
   */
  prependCls(cls: string, patches: string): string {
    const { g } = this;
    const first = this.rows(patches, [0], 'first_patch');
    const clsN = g.op('Add', [g.op('Mul', [first, g.float32([0])]), cls], {}, { name: 'cls' });
    return g.op('Concat', [clsN, patches], { axis: 1 }, { name: 'embeddings' });
  }

  /** [N, S, D] → [N, S−1, D]. */
  dropCls(x: string, S: number): string {
    return this.rows(
      x,
      Array.from({ length: S - 1 }, (_, i) => i + 1),
      'drop_cls',
    );
  }

  /** Rows `indices` of [N, S, D] (a Gather on axis 1, for the reason `prependCls` gives). */
  private rows(x: string, indices: number[], name: string): string {
    return this.g.op('Gather', [x, this.g.int64(indices)], { axis: 1 }, { name });
  }

  linear(x: string, weight: string, hasBias: boolean): string {
    const inputs = [x, this.w(`${weight}.weight`)];
    if (hasBias) inputs.push(this.w(`${weight}.bias`));
    return this.g.op('Gemm', inputs, { transB: 1 }, { name: weight.split('.').pop() });
  }

  layerNorm(x: string, weight: string, eps: number): string {
    return this.g.op(
      'LayerNormalization',
      [x, this.w(`${weight}.weight`), this.w(`${weight}.bias`)],
      { axis: -1, epsilon: { float: eps } },
      { name: 'layernorm' },
    );
  }

  rmsNorm(x: string, weight: string, eps: number): string {
    return this.g.op(
      'SimplifiedLayerNormalization',
      [x, this.w(weight)],
      { axis: -1, epsilon: { float: eps } },
      { name: 'rmsnorm' },
    );
  }

  act(x: string, act: VisionAct): string {
    const { g } = this;
    switch (act) {
      case 'gelu':
        return g.op('Gelu', [x], { approximate: 'none' }, { name: 'gelu' });
      case 'gelu_tanh':
        return g.op('Gelu', [x], { approximate: 'tanh' }, { name: 'gelu' });
      case 'quick_gelu':
        return g.op(
          'Mul',
          [x, g.op('Sigmoid', [g.op('Mul', [x, g.float32([1.702], [])])])],
          {},
          { name: 'quick_gelu' },
        );
      case 'relu':
        return g.op('Relu', [x]);
      case 'silu':
        return g.op('Mul', [x, g.op('Sigmoid', [x])], {}, { name: 'silu' });
    }
  }

  mlp(x: string, prefix: string): string {
    const h = this.act(this.linear(x, `${prefix}.fc1`, true), this.spec.hiddenAct);
    return this.linear(h, `${prefix}.fc2`, true);
  }

  /** Bidirectional multi-head self-attention over the S tokens of each image; rows in, rows out. */
  attention(
    x: string,
    S: number,
    names: { q: string; k: string; v: string; o: string; qkvBias: boolean; qNorm?: string; kNorm?: string },
  ): string {
    const { g } = this;
    const { hiddenSize: D, numHeads: H } = this.spec;
    const Dh = D / H;
    let q = this.linear(x, names.q, names.qkvBias);
    let k = this.linear(x, names.k, names.qkvBias);
    const v = this.linear(x, names.v, names.qkvBias);
    if (names.qNorm) q = this.rmsNorm(q, names.qNorm, 1e-6);
    if (names.kNorm) k = this.rmsNorm(k, names.kNorm, 1e-6);
    const heads = (t: string, perm: number[]): string => g.transpose(g.reshape(t, [-1, S, H, Dh]), perm);
    const qh = heads(q, [0, 2, 1, 3]); // [N, H, S, Dh]
    const kh = heads(k, [0, 2, 3, 1]); // [N, H, Dh, S]
    const vh = heads(v, [0, 2, 1, 3]); // [N, H, S, Dh]
    const scores = g.op('MatMul', [qh, kh], {}, { name: 'scores' });
    const scaled = g.op('Mul', [scores, g.float32([1 / Math.sqrt(Dh)], [])]);
    const probs = g.op('Softmax', [scaled], { axis: -1 });
    const ctx = g.op('MatMul', [probs, vh], {}, { name: 'context' });
    const merged = g.reshape(g.transpose(ctx, [0, 2, 1, 3]), [-1, D]);
    return this.linear(merged, names.o, true);
  }
}
