import {
  findWeightPrefix,
  type GraphBuilder,
  numPatches,
  type RawConfig,
  readFeatureSelectStrategy,
  readVitBasics,
  resolveFeatureLayer,
  SwitchyardError,
  VitOps,
  type VitSpec,
  visionConfig,
  visionInput,
  visionOutput,
  type WeightRef,
} from '@switchyard/core';

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

/** Reads an InternViT + pixel shuffle + projector spec from an InternVL config.json (4.x or 5.x). */
export function internVisionSpec(config: RawConfig, weightNames: Set<string>): InternVisionSpec {
  const vc = visionConfig(config);
  const vit = readVitBasics(vc, config, {
    hiddenSize: 1024,
    numHeads: 16,
    intermediateSize: 4096,
    numLayers: 24,
    imageSize: 448,
    patchSize: 14,
    layerNormEps: 1e-6,
    hiddenAct: 'gelu',
  });
  const towerPrefix = findWeightPrefix(
    weightNames,
    'embeddings.patch_embeddings.projection.weight',
    'the InternViT vision tower',
  );
  const projectorPrefix = findWeightPrefix(
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
  const selectStrategy = readFeatureSelectStrategy(config);
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
    featureLayer: resolveFeatureLayer(rawLayer as number, vit.numLayers),
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
  let x = ops.prependCls(w(`${p}embeddings.cls_token`), patches);
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
