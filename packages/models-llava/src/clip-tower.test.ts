import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '@switchyard/core';
import {
  actFn,
  add,
  checkCapiTower,
  checkTower,
  concatCols,
  deriveCheckpoint,
  dropFirstRow,
  fixture,
  fixtureCases,
  fixturesRoot,
  fixtureTitle,
  layerNorm,
  linear,
  type Mat,
  map,
  openTower,
  ortNodeLibrary,
  patchEmbed,
  privateGraphCache,
  randomTensor,
  readF32,
  rng,
  selfAttention,
  syntheticPixels,
  type TowerRunner,
  type Weights,
  weightsOf,
  withCls,
} from '@switchyard/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clipTower } from './clip-tower.js';
import { type ClipVisionSpec, clipVisionSpec } from './clip-vision-graph.js';

const tmp = privateGraphCache();

/** The tower of a checkpoint on the CPU backend, with its spec. */
type ClipEncoder = TowerRunner<ClipVisionSpec>;
const openClip = (ckpt: Checkpoint): Promise<ClipEncoder> => openTower(ckpt, clipTower(ckpt));
const check = (encoder: ClipEncoder, w: Weights, pixels: Float32Array, shape: number[]) =>
  checkTower(encoder, (spec, img) => clipReference(spec, w, img), pixels, shape);

// An independent float64 reference: plain loops over the checkpoint's weights, following
// transformers' modules one by one (hidden_states tuples included).
/** LLaVA's get_image_features for one image: CLIP hidden_states[layer(s)], strategy, projector. */
function clipReference(spec: ClipVisionSpec, w: Weights, pixels: Float32Array): Mat {
  const p = spec.towerPrefix;
  const eps = spec.layerNormEps;
  const act = actFn(spec.hiddenAct);
  let x = withCls(
    w(`${p}embeddings.class_embedding`),
    patchEmbed(pixels, spec, w(`${p}embeddings.patch_embedding.weight`)),
    w(`${p}embeddings.position_embedding.weight`),
  );
  x = layerNorm(x, w(`${p}pre_layrnorm.weight`), w(`${p}pre_layrnorm.bias`), eps);
  const hiddenStates = [x];
  for (let i = 0; i < spec.numLayers; i++) {
    const l = `${p}encoder.layers.${i}.`;
    const lin = (h: Mat, name: string) => linear(h, w(`${l}${name}.weight`), w(`${l}${name}.bias`));
    const h = layerNorm(x, w(`${l}layer_norm1.weight`), w(`${l}layer_norm1.bias`), eps);
    const ctx = selfAttention(
      lin(h, 'self_attn.q_proj'),
      lin(h, 'self_attn.k_proj'),
      lin(h, 'self_attn.v_proj'),
      spec.numHeads,
    );
    x = add(x, lin(ctx, 'self_attn.out_proj'));
    const h2 = layerNorm(x, w(`${l}layer_norm2.weight`), w(`${l}layer_norm2.bias`), eps);
    x = add(x, lin(map(lin(h2, 'mlp.fc1'), act), 'mlp.fc2'));
    hiddenStates.push(x);
  }
  const selected = spec.featureLayers.map((i) =>
    spec.selectStrategy === 'default' ? dropFirstRow(hiddenStates[i]) : hiddenStates[i],
  );
  const q = spec.projectorPrefix;
  const bias = (name: string) => (spec.projectorBias ? w(`${q}${name}.bias`) : undefined);
  const h = map(
    linear(concatCols(selected), w(`${q}linear_1.weight`), bias('linear_1')),
    actFn(spec.projectorAct),
  );
  return linear(h, w(`${q}linear_2.weight`), bias('linear_2'));
}

/** [d0, d1, d2, d3] → permute(0, 2, 1, 3), contiguous. */

for (const name of ['llava-tiny', 'llava-next-tiny']) {
  const fx = fixture(name);
  describe.skipIf(fx.missing)(fixtureTitle(fx, `${name}: CLIP tower + projector`), () => {
    let ckpt: Checkpoint;
    let encoder: ClipEncoder;
    let w: Weights;
    beforeAll(async () => {
      ckpt = Checkpoint.open(fx.dir);
      encoder = await openClip(ckpt);
      w = weightsOf(ckpt);
    });
    afterAll(() => encoder?.dispose());

    it('reads the spec from config.json', () => {
      const spec = clipVisionSpec(ckpt.config, new Set(ckpt.tensors.keys()));
      expect(spec).toMatchObject({
        towerPrefix: 'vision_tower.',
        projectorPrefix: 'multi_modal_projector.',
        hiddenSize: 32,
        numHeads: 2,
        numLayers: 2,
        intermediateSize: 64,
        imageSize: [32, 32],
        patchSize: [8, 8],
        layerNormEps: 1e-5,
        hiddenAct: 'quick_gelu',
        featureLayers: [1],
        selectStrategy: 'default',
        projectorAct: 'gelu',
        projectorBias: true,
        textHiddenSize: 64,
        tokensPerImage: 16,
      });
    });

    it.each(fixtureCases(name))('matches the float64 reference on $file', async ({ file, shape }) => {
      await check(encoder, w, readF32(file), shape);
    });

    it.skipIf(!ortNodeLibrary())(
      'gives the same features, batched, in the C API session the cuda backend runs it in (ORT CPU provider)',
      () => checkCapiTower(encoder, ckpt, clipTower(ckpt), fixtureCases(name)),
    );

    it('rejects pixel values of the wrong size', async () => {
      await expect(encoder.encode(new Float32Array(3 * 16 * 16), [1, 3, 16, 16])).rejects.toThrow(
        /do not fit the vision tower/,
      );
      await expect(encoder.encode(new Float32Array(10), [1, 3, 32, 32])).rejects.toThrow(/needs 3072/);
    });
  });
}

const llavaFx = fixture('llava-tiny');
describe.skipIf(llavaFx.missing)(
  fixtureTitle(llavaFx, 'CLIP: several feature layers, full strategy, no projector bias'),
  () => {
    it('concatenates hidden states 0 and -1 with CLS kept', async () => {
      const random = rng(7);
      const dir = deriveCheckpoint(
        tmp,
        llavaFx.dir,
        'llava-layers',
        (c) => {
          c.vision_feature_layer = [0, -1];
          c.vision_feature_select_strategy = 'full';
          c.projector_hidden_act = 'gelu_pytorch_tanh';
          c.multimodal_projector_bias = false;
        },
        (t) => {
          t.delete('multi_modal_projector.linear_1.bias');
          t.delete('multi_modal_projector.linear_2.bias');
          t.set('multi_modal_projector.linear_1.weight', {
            shape: [64, 64],
            data: randomTensor(random, [64, 64], 0.2),
          });
        },
      );
      const ckpt = Checkpoint.open(dir);
      const encoder = await openClip(ckpt);
      try {
        expect(encoder.spec).toMatchObject({
          featureLayers: [0, 2],
          selectStrategy: 'full',
          projectorBias: false,
          projectorAct: 'gelu_tanh',
          tokensPerImage: 17,
        });
        const [c] = fixtureCases('llava-tiny');
        await check(encoder, weightsOf(ckpt), readF32(c.file), c.shape);
      } finally {
        await encoder.dispose();
      }
    });
  },
);

const demoDir = join(fixturesRoot(), '..', 'demo-models', 'switchyard-demo-vision');
const demoMissing = (() => {
  try {
    readFileSync(join(demoDir, 'config.json'));
    return undefined;
  } catch {
    return `demo model folder ${demoDir} is missing`;
  }
})();
describe.skipIf(demoMissing)(
  demoMissing ? `demo vision model (skipped: ${demoMissing})` : 'demo vision model (fp16 weights)',
  () => {
    it('encodes two images like the float64 reference', async () => {
      const ckpt = Checkpoint.open(demoDir);
      const encoder = await openClip(ckpt);
      try {
        expect(encoder.spec).toMatchObject({
          towerPrefix: 'vision_tower.',
          projectorPrefix: 'multi_modal_projector.',
          hiddenSize: 192,
          featureLayers: [3],
          imageSize: [64, 64],
          tokensPerImage: 64,
          textHiddenSize: 288,
        });
        const shape = [2, 3, 64, 64];
        await check(encoder, weightsOf(ckpt), syntheticPixels(2, 3, 64, 64), shape);
      } finally {
        await encoder.dispose();
      }
    });
  },
);

describe('vision spec readers', () => {
  it('reads 4.x-style names and defaults (vision_tower.vision_model.*, sparse vision_config)', () => {
    const names = new Set([
      'vision_tower.vision_model.embeddings.patch_embedding.weight',
      'multi_modal_projector.linear_1.weight',
      'multi_modal_projector.linear_1.bias',
      'language_model.model.embed_tokens.weight',
    ]);
    const spec = clipVisionSpec(
      {
        vision_config: {
          hidden_size: 1024,
          image_size: 336,
          patch_size: 14,
          num_hidden_layers: 24,
          num_attention_heads: 16,
        },
        text_config: { model_type: 'llama' },
        vision_feature_layer: -2,
      },
      names,
    );
    expect(spec).toMatchObject({
      towerPrefix: 'vision_tower.vision_model.',
      projectorPrefix: 'multi_modal_projector.',
      numHeads: 16,
      hiddenAct: 'quick_gelu',
      layerNormEps: 1e-5,
      featureLayers: [23],
      tokensPerImage: 576,
      textHiddenSize: 4096,
    });
  });

  it('explains what is missing or unsupported', () => {
    expect(() => clipVisionSpec({}, new Set(['model.embed_tokens.weight']))).toThrow(
      /no weight ending in 'embeddings.patch_embedding.weight'/,
    );
    const names = new Set([
      'vision_tower.embeddings.patch_embedding.weight',
      'multi_modal_projector.linear_1.weight',
    ]);
    expect(() => clipVisionSpec({ vision_feature_layer: -30 }, names)).toThrow(/outside/);
    expect(() => clipVisionSpec({ projector_hidden_act: 'mish' }, names)).toThrow(/not supported/);
  });
});
