import { SwitchyardError } from '../errors.js';
import type { RawConfig } from '../loader/checkpoint.js';
import type { GraphBuilder } from './graph-builder.js';
import { DataType } from './proto.js';
import { VisionIO } from './vit.js';
import type { WeightRef } from './weights.js';

/** Activations the vision towers and projectors use (transformers' ACT2FN names, folded). */
export type VisionAct = 'gelu' | 'gelu_tanh' | 'quick_gelu' | 'relu' | 'silu';

/** What every ViT tower here shares. */
interface VitSpec {
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

/**
 * A CLIP vision tower (LLaVA, LLaVA-NeXT) with its two-layer projector. Hidden state i is the
 * embeddings after `pre_layrnorm` for i = 0, else the output of encoder layer i (transformers'
 * `hidden_states` tuple); `post_layernorm` is never used for features.
 */
export interface ClipVisionSpec extends VitSpec {
  /**
   * Indices into the hidden states (0…numLayers, negatives of config.json resolved), concatenated
   * along the channels when more than one (`vision_feature_layer` as a list).
   */
  featureLayers: number[];
  /** 'default' drops the CLS token of every selected layer; 'full' keeps it. */
  selectStrategy: 'default' | 'full';
  /** `linear_1` and `linear_2` carry biases (`multimodal_projector_bias`). */
  projectorBias: boolean;
}

/**
 * An InternViT tower (InternVL) followed by the CLS drop, pixel shuffle and the projector
 * (layer_norm → linear_1 → act → linear_2).
 */
export interface InternVisionSpec extends VitSpec {
  /** Index into the hidden states (0 = embeddings, i = output of layer i). */
  featureLayer: number;
  /**
   * The tower's final LayerNorm applies: the feature layer is -1 (`last_hidden_state`) and the
   * tower has a `layernorm` (use_mean_pooling false).
   */
  finalLayerNorm: boolean;
  /** layernorm_before / layernorm_after: LayerNorm with bias, or RMSNorm. */
  normType: 'layer_norm' | 'rms_norm';
  /** q/k/v projections carry biases (`attention_bias`). */
  qkvBias: boolean;
  /** RMSNorm over the whole q and k (width hiddenSize, eps 1e-6) before splitting heads. */
  qkNorm: boolean;
  /** lambda_1 / lambda_2 scale the attention and MLP outputs before the residual adds. */
  layerScale: boolean;
  /** Learned absolute position embeddings (CLS included) are added to the patch embeddings. */
  absolutePositionEmbeddings: boolean;
  /** `downsample_ratio` (0.5: 2×2 neighbourhoods merged into one token of 4× the channels). */
  downsampleRatio: number;
  /** The projector's LayerNorm epsilon (torch's default 1e-5; not in config.json). */
  projectorLayerNormEps: number;
}

// ---------------------------------------------------------------------------------------------
// config.json readers

/** Reads a CLIP tower + LLaVA projector spec from a LLaVA / LLaVA-NeXT config.json (4.x or 5.x). */
export function clipVisionSpec(config: RawConfig, weightNames: Set<string>): ClipVisionSpec {
  const vc = visionConfig(config);
  const vit = vitBasics(vc, config, {
    hiddenSize: 768,
    numHeads: 12,
    intermediateSize: 3072,
    numLayers: 12,
    imageSize: 224,
    patchSize: 32,
    layerNormEps: 1e-5,
    hiddenAct: 'quick_gelu',
  });
  const towerPrefix = findPrefix(weightNames, 'embeddings.patch_embedding.weight', 'the CLIP vision tower');
  const projectorPrefix = findPrefix(
    weightNames,
    'multi_modal_projector.linear_1.weight',
    'the LLaVA projector',
    'linear_1.weight',
  );
  const rawLayers = config.vision_feature_layer ?? -2;
  const layers = Array.isArray(rawLayers) ? rawLayers : [rawLayers];
  if (layers.length === 0 || !layers.every((l) => Number.isInteger(l))) {
    throw new SwitchyardError(
      `config.json vision_feature_layer must be an integer or a list of integers, got ${JSON.stringify(rawLayers)}`,
      'model_load',
    );
  }
  const featureLayers = layers.map((l) => resolveLayer(l as number, vit.numLayers));
  const selectStrategy = readStrategy(config);
  const patches = numPatches(vit);
  return {
    ...vit,
    towerPrefix,
    projectorPrefix,
    featureLayers,
    selectStrategy,
    projectorBias: weightNames.has(`${projectorPrefix}linear_1.bias`),
    tokensPerImage: selectStrategy === 'default' ? patches : patches + 1,
  };
}

/** Reads an InternViT + pixel shuffle + projector spec from an InternVL config.json (4.x or 5.x). */
export function internVisionSpec(config: RawConfig, weightNames: Set<string>): InternVisionSpec {
  const vc = visionConfig(config);
  const vit = vitBasics(vc, config, {
    hiddenSize: 1024,
    numHeads: 16,
    intermediateSize: 4096,
    numLayers: 24,
    imageSize: 448,
    patchSize: 14,
    layerNormEps: 1e-6,
    hiddenAct: 'gelu',
  });
  const towerPrefix = findPrefix(
    weightNames,
    'embeddings.patch_embeddings.projection.weight',
    'the InternViT vision tower',
  );
  const projectorPrefix = findPrefix(
    weightNames,
    'multi_modal_projector.layer_norm.weight',
    'the InternVL projector',
    'layer_norm.weight',
  );
  const rawLayer = config.vision_feature_layer ?? -1;
  if (!Number.isInteger(rawLayer)) {
    throw new SwitchyardError(
      `config.json vision_feature_layer must be an integer for InternVL, got ${JSON.stringify(rawLayer)}`,
      'model_load',
    );
  }
  const selectStrategy = readStrategy(config);
  if (selectStrategy !== 'default') {
    throw new SwitchyardError(
      "InternVL needs vision_feature_select_strategy 'default' (the CLS token is dropped before the pixel shuffle)",
      'model_load',
    );
  }
  const normType = (vc.norm_type ?? 'layer_norm') as string;
  if (normType !== 'layer_norm' && normType !== 'rms_norm') {
    throw new SwitchyardError(
      `vision_config.norm_type '${normType}' is not supported; supported: layer_norm, rms_norm`,
      'model_load',
    );
  }
  const ratio = typeof config.downsample_ratio === 'number' ? config.downsample_ratio : 0.5;
  const scale = Math.round(1 / ratio);
  const [gh, gw] = [vit.imageSize[0] / vit.patchSize[0], vit.imageSize[1] / vit.patchSize[1]];
  if (Math.abs(1 / ratio - scale) > 1e-6 || gh !== gw || gh % scale !== 0) {
    throw new SwitchyardError(
      `InternVL downsample_ratio ${ratio} does not divide the ${gh}×${gw} patch grid of the vision tower`,
      'model_load',
    );
  }
  const layer0 = `${towerPrefix}encoder.layer.0.`;
  return {
    ...vit,
    towerPrefix,
    projectorPrefix,
    featureLayer: resolveLayer(rawLayer as number, vit.numLayers),
    finalLayerNorm: rawLayer === -1 && weightNames.has(`${towerPrefix}layernorm.weight`),
    normType,
    qkvBias: weightNames.has(`${layer0}attention.q_proj.bias`),
    qkNorm: weightNames.has(`${layer0}attention.q_norm.weight`),
    layerScale: weightNames.has(`${layer0}lambda_1`),
    absolutePositionEmbeddings: weightNames.has(`${towerPrefix}embeddings.position_embeddings`),
    downsampleRatio: ratio,
    projectorLayerNormEps: 1e-5,
    tokensPerImage: (gh / scale) * (gw / scale),
  };
}

function visionConfig(config: RawConfig): RawConfig {
  return (config.vision_config as RawConfig | undefined) ?? config;
}

function vitBasics(
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

function readStrategy(config: RawConfig): 'default' | 'full' {
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
function resolveLayer(layer: number, numLayers: number): number {
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
function findPrefix(names: Set<string>, suffix: string, what: string, strip = suffix): string {
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

function numPatches(spec: Pick<VitSpec, 'imageSize' | 'patchSize'>): number {
  return (spec.imageSize[0] / spec.patchSize[0]) * (spec.imageSize[1] / spec.patchSize[1]);
}

// ---------------------------------------------------------------------------------------------
// graphs

/** LLaVA: CLIP tower at the selected hidden state(s), CLS kept or dropped, projector. */
export function buildLlavaVisionGraph(g: GraphBuilder, spec: ClipVisionSpec, w: WeightRef): void {
  const { hiddenSize: D } = spec;
  const p = spec.towerPrefix;
  const S = numPatches(spec) + 1;
  const ops = new VitOps(g, w, spec);

  const pixels = visionInput(g, spec);
  const patches = ops.patchEmbed(pixels, `${p}embeddings.patch_embedding`, false);
  const cls = g.reshape(w(`${p}embeddings.class_embedding`), [1, 1, D]);
  let x = ops.prependCls(pixels, cls, patches);
  x = g.op('Add', [x, w(`${p}embeddings.position_embedding.weight`)], {}, { name: 'position_embedding' });
  x = g.reshape(ops.layerNorm(x, `${p}pre_layrnorm`, spec.layerNormEps), [-1, D]);

  // Hidden states as [N·S, D] rows; only the layers up to the deepest selected one are emitted.
  const states = [x];
  const last = Math.max(...spec.featureLayers);
  for (let i = 0; i < last; i++) {
    g.within(`layers.${i}`, () => {
      const pre = `${p}encoder.layers.${i}`;
      const h = ops.layerNorm(x, `${pre}.layer_norm1`, spec.layerNormEps);
      const attn = ops.attention(h, S, {
        q: `${pre}.self_attn.q_proj`,
        k: `${pre}.self_attn.k_proj`,
        v: `${pre}.self_attn.v_proj`,
        o: `${pre}.self_attn.out_proj`,
        qkvBias: true,
      });
      x = g.op('Add', [x, attn], {}, { name: 'residual' });
      const h2 = ops.layerNorm(x, `${pre}.layer_norm2`, spec.layerNormEps);
      x = g.op('Add', [x, ops.mlp(h2, `${pre}.mlp`)], {}, { name: 'residual' });
      states.push(x);
    });
  }

  const selected = g.within('select', () =>
    spec.featureLayers.map((i) => {
      const t = g.reshape(states[i], [-1, S, D]);
      return spec.selectStrategy === 'default' ? ops.dropCls(t, S) : t;
    }),
  );
  const features = selected.length === 1 ? selected[0] : g.op('Concat', selected, { axis: -1 });
  const rows = g.reshape(features, [-1, D * selected.length]);
  const q = spec.projectorPrefix;
  const projected = g.within('projector', () => {
    const h = ops.act(ops.linear(rows, `${q}linear_1`, spec.projectorBias), spec.projectorAct);
    return ops.linear(h, `${q}linear_2`, spec.projectorBias);
  });
  visionOutput(g, projected, spec);
}

/** InternVL: InternViT tower, CLS dropped, pixel shuffle, projector. */
export function buildInternVLVisionGraph(g: GraphBuilder, spec: InternVisionSpec, w: WeightRef): void {
  const { hiddenSize: D } = spec;
  const p = spec.towerPrefix;
  const S = numPatches(spec) + 1;
  const ops = new VitOps(g, w, spec);
  const norm = (x: string, weight: string): string =>
    spec.normType === 'rms_norm'
      ? ops.rmsNorm(x, `${weight}.weight`, spec.layerNormEps)
      : ops.layerNorm(x, weight, spec.layerNormEps);

  const pixels = visionInput(g, spec);
  const patches = ops.patchEmbed(pixels, `${p}embeddings.patch_embeddings.projection`, true);
  let x = ops.prependCls(pixels, w(`${p}embeddings.cls_token`), patches);
  if (spec.absolutePositionEmbeddings) {
    x = g.op('Add', [x, w(`${p}embeddings.position_embeddings`)], {}, { name: 'position_embedding' });
  }
  x = g.reshape(x, [-1, D]);

  for (let i = 0; i < spec.featureLayer; i++) {
    g.within(`layer.${i}`, () => {
      const pre = `${p}encoder.layer.${i}`;
      const h = norm(x, `${pre}.layernorm_before`);
      let attn = ops.attention(h, S, {
        q: `${pre}.attention.q_proj`,
        k: `${pre}.attention.k_proj`,
        v: `${pre}.attention.v_proj`,
        o: `${pre}.attention.projection_layer`,
        qkvBias: spec.qkvBias,
        qNorm: spec.qkNorm ? `${pre}.attention.q_norm.weight` : undefined,
        kNorm: spec.qkNorm ? `${pre}.attention.k_norm.weight` : undefined,
      });
      if (spec.layerScale) attn = g.op('Mul', [attn, w(`${pre}.lambda_1`)], {}, { name: 'lambda_1' });
      x = g.op('Add', [x, attn], {}, { name: 'residual' });
      const h2 = norm(x, `${pre}.layernorm_after`);
      let mlp = ops.mlp(h2, `${pre}.mlp`);
      if (spec.layerScale) mlp = g.op('Mul', [mlp, w(`${pre}.lambda_2`)], {}, { name: 'lambda_2' });
      x = g.op('Add', [x, mlp], {}, { name: 'residual' });
    });
  }
  if (spec.finalLayerNorm) x = ops.layerNorm(x, `${p}layernorm`, spec.layerNormEps);

  // Drop CLS, then pixel shuffle: the [g, g] patch grid becomes [g/s, g/s] tokens whose channels
  // are the s×s neighbourhood in (row offset, column offset, channel) order, as transformers'
  // view/permute sequence lays them out.
  const s = Math.round(1 / spec.downsampleRatio);
  const grid = spec.imageSize[0] / spec.patchSize[0];
  const shuffled = g.within('pixel_shuffle', () => {
    const patchTokens = ops.dropCls(g.reshape(x, [-1, S, D]), S);
    const blocks = g.reshape(patchTokens, [-1, grid / s, s, grid / s, s, D]);
    return g.reshape(g.transpose(blocks, [0, 1, 3, 2, 4, 5]), [-1, s * s * D]);
  });
  const q = spec.projectorPrefix;
  const projected = g.within('projector', () => {
    const normed = ops.layerNorm(shuffled, `${q}layer_norm`, spec.projectorLayerNormEps);
    const h = ops.act(ops.linear(normed, `${q}linear_1`, true), spec.projectorAct);
    return ops.linear(h, `${q}linear_2`, true);
  });
  visionOutput(g, projected, spec);
}

function visionInput(g: GraphBuilder, spec: VitSpec): string {
  return g.input(VisionIO.pixelValues, DataType.FLOAT, ['N', spec.numChannels, ...spec.imageSize]);
}

function visionOutput(g: GraphBuilder, rows: string, spec: VitSpec): void {
  const out = g.reshape(rows, [-1, spec.tokensPerImage, spec.textHiddenSize]);
  g.output(out, VisionIO.imageFeatures, DataType.FLOAT, ['N', spec.tokensPerImage, spec.textHiddenSize]);
}

/** The ViT building blocks both towers share, over [rows, channels] activations. */
class VitOps {
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

  /** Concatenates a [1, 1, D] CLS embedding, broadcast over the batch, before [N, P, D] patches. */
  prependCls(pixels: string, cls: string, patches: string): string {
    const { g } = this;
    const n = g.op('Slice', [g.op('Shape', [pixels]), g.int64([0]), g.int64([1])], {}, { name: 'batch' });
    const shape = g.op('Concat', [n, g.int64([1, this.spec.hiddenSize])], { axis: 0 }, { name: 'shape' });
    const clsN = g.op('Expand', [cls, shape], {}, { name: 'cls' });
    return g.op('Concat', [clsN, patches], { axis: 1 }, { name: 'embeddings' });
  }

  /** [N, S, D] → [N, S−1, D]. */
  dropCls(x: string, S: number): string {
    const { g } = this;
    return g.op('Slice', [x, g.int64([1]), g.int64([S]), g.int64([1])], {}, { name: 'drop_cls' });
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
