import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '@switchyard/core';
import {
  actFn,
  add,
  checkCapiTower,
  checkTower,
  deriveCheckpoint,
  dropFirstRow,
  fixture,
  fixtureCases,
  fixtureTitle,
  layerNorm,
  linear,
  type Mat,
  map,
  openTower,
  ortNodeLibrary,
  patchEmbed,
  permute0213,
  privateGraphCache,
  randomTensor,
  readF32,
  rmsNorm,
  rng,
  selfAttention,
  type TowerRunner,
  type Weights,
  weightsOf,
  withCls,
} from '@switchyard/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InternVisionSpec, internVisionSpec } from './intern-vit-graph.js';
import { internVitTower } from './intern-vit-tower.js';

const tmp = privateGraphCache();

/** The tower of a checkpoint on the CPU backend, with its spec. */
type InternEncoder = TowerRunner<InternVisionSpec>;
const openIntern = (ckpt: Checkpoint): Promise<InternEncoder> => openTower(ckpt, internVitTower(ckpt));
const check = (encoder: InternEncoder, w: Weights, pixels: Float32Array, shape: number[]) =>
  checkTower(encoder, (spec, img) => internReference(spec, w, img), pixels, shape);

// An independent float64 reference: plain loops over the checkpoint's weights, following
// transformers' modules one by one (views and permutes included).
/** InternVL's get_image_features for one tile: tower, CLS drop, pixel_shuffle, projector. */
function internReference(spec: InternVisionSpec, w: Weights, pixels: Float32Array): Mat {
  const p = spec.towerPrefix;
  const eps = spec.layerNormEps;
  const act = actFn(spec.hiddenAct);
  const norm = (x: Mat, name: string) =>
    spec.normType === 'rms_norm'
      ? rmsNorm(x, w(`${name}.weight`), eps)
      : layerNorm(x, w(`${name}.weight`), w(`${name}.bias`), eps);
  let x = withCls(
    w(`${p}embeddings.cls_token`),
    patchEmbed(
      pixels,
      spec,
      w(`${p}embeddings.patch_embeddings.projection.weight`),
      w(`${p}embeddings.patch_embeddings.projection.bias`),
    ),
    spec.absolutePositionEmbeddings ? w(`${p}embeddings.position_embeddings`) : undefined,
  );
  const hiddenStates = [x];
  for (let i = 0; i < spec.numLayers; i++) {
    const l = `${p}encoder.layer.${i}.`;
    const lin = (h: Mat, name: string, hasBias = true) =>
      linear(h, w(`${l}${name}.weight`), hasBias ? w(`${l}${name}.bias`) : undefined);
    const h = norm(x, `${l}layernorm_before`);
    let q = lin(h, 'attention.q_proj', spec.qkvBias);
    let k = lin(h, 'attention.k_proj', spec.qkvBias);
    if (spec.qkNorm) {
      q = rmsNorm(q, w(`${l}attention.q_norm.weight`), 1e-6);
      k = rmsNorm(k, w(`${l}attention.k_norm.weight`), 1e-6);
    }
    const ctx = selfAttention(q, k, lin(h, 'attention.v_proj', spec.qkvBias), spec.numHeads);
    const attn = lin(ctx, 'attention.projection_layer');
    x = add(x, attn, spec.layerScale ? w(`${l}lambda_1`) : undefined);
    const h2 = norm(x, `${l}layernorm_after`);
    const mlp = lin(map(lin(h2, 'mlp.fc1'), act), 'mlp.fc2');
    x = add(x, mlp, spec.layerScale ? w(`${l}lambda_2`) : undefined);
    hiddenStates.push(x);
  }
  let features = hiddenStates[spec.featureLayer];
  if (spec.finalLayerNorm)
    features = layerNorm(features, w(`${p}layernorm.weight`), w(`${p}layernorm.bias`), eps);
  features = dropFirstRow(features);
  // transformers' pixel_shuffle on [1, g, g, C], view by view.
  const g = Math.sqrt(features.rows);
  const C = features.cols;
  const r = spec.downsampleRatio;
  let v = features.data; // view(1, g, g·r, C/r): same memory
  v = permute0213(v, 1, g, g * r, C / r);
  // view(1, g·r, g·r, C/r²): same memory
  v = permute0213(v, 1, g * r, g * r, C / (r * r));
  const shuffled: Mat = { rows: g * r * (g * r), cols: C / (r * r), data: v };
  const q = spec.projectorPrefix;
  const normed = layerNorm(
    shuffled,
    w(`${q}layer_norm.weight`),
    w(`${q}layer_norm.bias`),
    spec.projectorLayerNormEps,
  );
  const h = map(linear(normed, w(`${q}linear_1.weight`), w(`${q}linear_1.bias`)), actFn(spec.projectorAct));
  return linear(h, w(`${q}linear_2.weight`), w(`${q}linear_2.bias`));
}

/** The reference over N images: [N·L, hidden] flattened. */

const internFx = fixture('internvl-tiny');
describe.skipIf(internFx.missing)(fixtureTitle(internFx, 'internvl-tiny: InternViT + pixel shuffle'), () => {
  let ckpt: Checkpoint;
  let encoder: InternEncoder;
  let w: Weights;
  beforeAll(async () => {
    ckpt = Checkpoint.open(internFx.dir);
    encoder = await openIntern(ckpt);
    w = weightsOf(ckpt);
  });
  afterAll(() => encoder?.dispose());

  it('reads the spec from config.json', () => {
    const spec = internVisionSpec(ckpt.config, new Set(ckpt.tensors.keys()));
    expect(spec).toMatchObject({
      towerPrefix: 'vision_tower.',
      projectorPrefix: 'multi_modal_projector.',
      hiddenSize: 32,
      numHeads: 2,
      numLayers: 2,
      intermediateSize: 64,
      imageSize: [56, 56],
      patchSize: [14, 14],
      layerNormEps: 1e-6,
      hiddenAct: 'gelu',
      featureLayer: 2,
      finalLayerNorm: false,
      normType: 'layer_norm',
      qkvBias: false,
      qkNorm: false,
      layerScale: true,
      absolutePositionEmbeddings: true,
      downsampleRatio: 0.5,
      projectorAct: 'gelu',
      projectorLayerNormEps: 1e-5,
      textHiddenSize: 64,
      tokensPerImage: 4,
    });
  });

  it.each(fixtureCases('internvl-tiny'))(
    'matches the float64 reference on $file',
    async ({ file, shape }) => {
      await check(encoder, w, readF32(file), shape);
    },
  );

  it.skipIf(!ortNodeLibrary())(
    'gives the same features, batched, in the C API session the cuda backend runs it in (ORT CPU provider)',
    () => checkCapiTower(encoder, ckpt, internVitTower(ckpt), fixtureCases('internvl-tiny')),
  );

  it('RMSNorm, qk norm, q/k/v biases, final layernorm and an earlier feature layer', async () => {
    const random = rng(11);
    const D = 32;
    const dir = deriveCheckpoint(
      tmp,
      internFx.dir,
      'internvl-variants',
      (c) => {
        const vc = c.vision_config as Record<string, unknown>;
        vc.norm_type = 'rms_norm';
        vc.use_qk_norm = true;
        vc.attention_bias = true;
        vc.use_mean_pooling = false;
      },
      (t) => {
        for (const l of [0, 1]) {
          const pre = `vision_tower.encoder.layer.${l}.attention.`;
          for (const n of ['q_proj', 'k_proj', 'v_proj']) {
            t.set(`${pre}${n}.bias`, { shape: [D], data: randomTensor(random, [D], 0.3) });
          }
          for (const n of ['q_norm', 'k_norm']) {
            t.set(`${pre}${n}.weight`, { shape: [D], data: randomTensor(random, [D], 0.3, 1) });
          }
        }
        t.set('vision_tower.layernorm.weight', { shape: [D], data: randomTensor(random, [D], 0.3, 1) });
        t.set('vision_tower.layernorm.bias', { shape: [D], data: randomTensor(random, [D], 0.3) });
      },
    );
    const pixels = readF32(fixtureCases('internvl-tiny')[0].file);
    const shape = fixtureCases('internvl-tiny')[0].shape;
    for (const layer of [-1, 1]) {
      const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      cfg.vision_feature_layer = layer;
      writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
      const variant = Checkpoint.open(dir);
      const enc = await openIntern(variant);
      try {
        expect(enc.spec).toMatchObject({
          normType: 'rms_norm',
          qkNorm: true,
          qkvBias: true,
          featureLayer: layer === -1 ? 2 : 1,
          finalLayerNorm: layer === -1,
        });
        await check(enc, weightsOf(variant), pixels, shape);
      } finally {
        await enc.dispose();
      }
    }
  });
});

describe('vision spec readers', () => {
  it('reads 5.x-style names (model.vision_tower.*, model.multi_modal_projector.*)', () => {
    const names = new Set([
      'model.vision_tower.embeddings.patch_embeddings.projection.weight',
      'model.vision_tower.encoder.layer.0.lambda_1',
      'model.multi_modal_projector.layer_norm.weight',
      'model.language_model.embed_tokens.weight',
    ]);
    const spec = internVisionSpec(
      {
        vision_config: { hidden_size: 1024, image_size: [448, 448], patch_size: [14, 14] },
        text_config: { hidden_size: 896 },
      },
      names,
    );
    expect(spec).toMatchObject({
      towerPrefix: 'model.vision_tower.',
      projectorPrefix: 'model.multi_modal_projector.',
      featureLayer: 24,
      layerScale: true,
      absolutePositionEmbeddings: false,
      tokensPerImage: 256,
      textHiddenSize: 896,
    });
  });
});
