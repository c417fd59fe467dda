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

/** Reads a CLIP tower + LLaVA projector spec from a LLaVA / LLaVA-NeXT config.json (4.x or 5.x). */
export function clipVisionSpec(config: RawConfig, weightNames: Set<string>): ClipVisionSpec {
  const vc = visionConfig(config);
  const vit = readVitBasics(vc, config, {
    hiddenSize: 768,
    numHeads: 12,
    intermediateSize: 3072,
    numLayers: 12,
    imageSize: 224,
    patchSize: 32,
    layerNormEps: 1e-5,
    hiddenAct: 'quick_gelu',
  });
  const towerPrefix = findWeightPrefix(
    weightNames,
    'embeddings.patch_embedding.weight',
    'the CLIP vision tower',
  );
  const projectorPrefix = findWeightPrefix(
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
  const featureLayers = layers.map((l) => resolveFeatureLayer(l as number, vit.numLayers));
  const selectStrategy = readFeatureSelectStrategy(config);
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

/** LLaVA: CLIP tower at the selected hidden state(s), CLS kept or dropped, projector. */
export function buildLlavaVisionGraph(g: GraphBuilder, spec: ClipVisionSpec, w: WeightRef): void {
  const { hiddenSize: D } = spec;
  const p = spec.towerPrefix;
  const S = numPatches(spec) + 1;
  const ops = new VitOps(g, w, spec);

  const pixels = visionInput(g, spec);
  const patches = ops.patchEmbed(pixels, `${p}embeddings.patch_embedding`, false);
  const cls = g.reshape(w(`${p}embeddings.class_embedding`), [1, 1, D]);
  let x = ops.prependCls(cls, patches);
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
