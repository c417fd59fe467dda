import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuBackend } from '../backends/cpu/cpu-backend.js';
import type { OrtVisionRunner } from '../backends/ort-vision-runner.js';
import { Checkpoint } from '../loader/checkpoint.js';
import { readTensorF32 } from '../loader/safetensors.js';
import { fixture, fixturesRoot, fixtureTitle, maxAbsDiff } from '../testing/fixtures.js';
import type { GraphBuilder } from './graph-builder.js';
import {
  buildInternVLVisionGraph,
  buildLlavaVisionGraph,
  type ClipVisionSpec,
  clipVisionSpec,
  type InternVisionSpec,
  internVisionSpec,
  type VisionAct,
} from './vision-graph.js';

// Graphs are built into a private cache, so a test always runs the builder's current output.
/** The tower of a checkpoint run by the CPU backend, with its spec (as the model packages build it). */
type VisionEncoder = OrtVisionRunner & {
  kind: 'llava' | 'internvl';
  spec: ClipVisionSpec | InternVisionSpec;
  tokensPerImage: number;
  hiddenSize: number;
};
const VisionEncoder = {
  async create(ckpt: Checkpoint, kind: 'llava' | 'internvl'): Promise<VisionEncoder> {
    const names = new Set(ckpt.tensors.keys());
    const spec = kind === 'llava' ? clipVisionSpec(ckpt.config, names) : internVisionSpec(ckpt.config, names);
    const build = (g: GraphBuilder, w: (n: string) => string) =>
      kind === 'llava'
        ? buildLlavaVisionGraph(g, spec as ClipVisionSpec, w)
        : buildInternVLVisionGraph(g, spec as InternVisionSpec, w);
    const tower = {
      name: kind,
      key: spec,
      numChannels: spec.numChannels,
      imageSize: spec.imageSize,
      tokensPerImage: spec.tokensPerImage,
      hiddenSize: spec.textHiddenSize,
      build,
    };
    const runner = (await cpuBackend.createVisionRunner!(ckpt, tower, {
      dtype: 'float32',
    })) as OrtVisionRunner;
    return Object.assign(runner, {
      kind,
      spec,
      tokensPerImage: spec.tokensPerImage,
      hiddenSize: spec.textHiddenSize,
    });
  },
};

const tmp = mkdtempSync(join(tmpdir(), 'switchyard-vision-'));
const savedCacheDir = process.env.SWITCHYARD_CACHE_DIR;
process.env.SWITCHYARD_CACHE_DIR = join(tmp, 'cache');
afterAll(() => {
  if (savedCacheDir === undefined) delete process.env.SWITCHYARD_CACHE_DIR;
  else process.env.SWITCHYARD_CACHE_DIR = savedCacheDir;
  rmSync(tmp, { recursive: true, force: true });
});

const TOLERANCE = 1e-4;

// ---------------------------------------------------------------------------------------------
// An independent float64 reference: plain loops over the checkpoint's weights, following
// transformers' modules one by one (hidden_states tuples, views and permutes included).

type Weights = (name: string) => Float32Array;

function weightsOf(ckpt: Checkpoint): Weights {
  const cache = new Map<string, Float32Array>();
  return (name) => {
    let t = cache.get(name);
    if (!t) {
      t = readTensorF32(ckpt.tensor(name));
      cache.set(name, t);
    }
    return t;
  };
}

/** A [rows, cols] float64 matrix. */
interface Mat {
  rows: number;
  cols: number;
  data: Float64Array;
}

function mat(rows: number, cols: number): Mat {
  return { rows, cols, data: new Float64Array(rows * cols) };
}

/** x · Wᵀ + b, W stored [out, in] as nn.Linear does. */
function linear(x: Mat, weight: Float32Array, bias?: Float32Array): Mat {
  const out = weight.length / x.cols;
  const y = mat(x.rows, out);
  for (let r = 0; r < x.rows; r++) {
    for (let o = 0; o < out; o++) {
      let s = bias ? bias[o] : 0;
      for (let i = 0; i < x.cols; i++) s += x.data[r * x.cols + i] * weight[o * x.cols + i];
      y.data[r * out + o] = s;
    }
  }
  return y;
}

function layerNorm(x: Mat, gamma: Float32Array, beta: Float32Array, eps: number): Mat {
  const y = mat(x.rows, x.cols);
  for (let r = 0; r < x.rows; r++) {
    const row = x.data.subarray(r * x.cols, (r + 1) * x.cols);
    const mean = row.reduce((a, b) => a + b, 0) / x.cols;
    const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / x.cols;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < x.cols; c++) y.data[r * x.cols + c] = (row[c] - mean) * inv * gamma[c] + beta[c];
  }
  return y;
}

function rmsNorm(x: Mat, gamma: Float32Array, eps: number): Mat {
  const y = mat(x.rows, x.cols);
  for (let r = 0; r < x.rows; r++) {
    const row = x.data.subarray(r * x.cols, (r + 1) * x.cols);
    const inv = 1 / Math.sqrt(row.reduce((a, b) => a + b * b, 0) / x.cols + eps);
    for (let c = 0; c < x.cols; c++) y.data[r * x.cols + c] = row[c] * inv * gamma[c];
  }
  return y;
}

function add(a: Mat, b: Mat, scale?: Float32Array): Mat {
  const y = mat(a.rows, a.cols);
  for (let i = 0; i < a.data.length; i++) y.data[i] = a.data[i] + b.data[i] * (scale ? scale[i % a.cols] : 1);
  return y;
}

function map(x: Mat, f: (v: number) => number): Mat {
  return { rows: x.rows, cols: x.cols, data: x.data.map(f) };
}

/** erf in float64: its Maclaurin series near 0, a continued fraction of erfc further out. */
function erf(x: number): number {
  const a = Math.abs(x);
  if (a < 2.5) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 100; n++) {
      term *= (-x * x) / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = a;
  for (let k = 60; k >= 1; k--) f = a + k / 2 / f;
  const erfc = Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

function actFn(act: VisionAct): (v: number) => number {
  switch (act) {
    case 'gelu':
      return (v) => 0.5 * v * (1 + erf(v / Math.SQRT2));
    case 'gelu_tanh':
      return (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    case 'quick_gelu':
      return (v) => v / (1 + Math.exp(-1.702 * v));
    case 'relu':
      return (v) => Math.max(0, v);
    case 'silu':
      return (v) => v / (1 + Math.exp(-v));
  }
}

/** Conv2d with kernel = stride = patch, then flatten(2).transpose(1, 2): [patches, D]. */
function patchEmbed(
  pixels: Float32Array,
  spec: ClipVisionSpec | InternVisionSpec,
  weight: Float32Array,
  bias?: Float32Array,
): Mat {
  const [H, W] = spec.imageSize;
  const [ph, pw] = spec.patchSize;
  const C = spec.numChannels;
  const D = spec.hiddenSize;
  const gh = H / ph;
  const gw = W / pw;
  const y = mat(gh * gw, D);
  for (let gy = 0; gy < gh; gy++) {
    for (let gx = 0; gx < gw; gx++) {
      for (let d = 0; d < D; d++) {
        let s = bias ? bias[d] : 0;
        for (let c = 0; c < C; c++) {
          for (let ky = 0; ky < ph; ky++) {
            for (let kx = 0; kx < pw; kx++) {
              s +=
                weight[((d * C + c) * ph + ky) * pw + kx] * pixels[(c * H + gy * ph + ky) * W + gx * pw + kx];
            }
          }
        }
        y.data[(gy * gw + gx) * D + d] = s;
      }
    }
  }
  return y;
}

/** cat([cls, patches]) + position embeddings (when given): [S, D]. */
function withCls(cls: Float32Array, patches: Mat, pos?: Float32Array): Mat {
  const D = patches.cols;
  const y = mat(patches.rows + 1, D);
  y.data.set(cls, 0);
  y.data.set(patches.data, D);
  if (pos) for (let i = 0; i < y.data.length; i++) y.data[i] += pos[i];
  return y;
}

/** Eager multi-head self-attention over one image's tokens (no mask). */
function selfAttention(q: Mat, k: Mat, v: Mat, numHeads: number): Mat {
  const S = q.rows;
  const D = q.cols;
  const Dh = D / numHeads;
  const scale = Dh ** -0.5;
  const out = mat(S, D);
  const scores = new Float64Array(S);
  for (let h = 0; h < numHeads; h++) {
    for (let i = 0; i < S; i++) {
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < S; j++) {
        let s = 0;
        for (let d = 0; d < Dh; d++) s += q.data[i * D + h * Dh + d] * k.data[j * D + h * Dh + d];
        scores[j] = s * scale;
        max = Math.max(max, scores[j]);
      }
      let sum = 0;
      for (let j = 0; j < S; j++) {
        scores[j] = Math.exp(scores[j] - max);
        sum += scores[j];
      }
      for (let d = 0; d < Dh; d++) {
        let s = 0;
        for (let j = 0; j < S; j++) s += (scores[j] / sum) * v.data[j * D + h * Dh + d];
        out.data[i * D + h * Dh + d] = s;
      }
    }
  }
  return out;
}

function dropFirstRow(x: Mat): Mat {
  return { rows: x.rows - 1, cols: x.cols, data: x.data.slice(x.cols) };
}

function concatCols(parts: Mat[]): Mat {
  const cols = parts.reduce((a, p) => a + p.cols, 0);
  const y = mat(parts[0].rows, cols);
  for (let r = 0; r < y.rows; r++) {
    let o = 0;
    for (const p of parts) {
      y.data.set(p.data.subarray(r * p.cols, (r + 1) * p.cols), r * cols + o);
      o += p.cols;
    }
  }
  return y;
}

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
function permute0213(x: Float64Array, d0: number, d1: number, d2: number, d3: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let a = 0; a < d0; a++)
    for (let b = 0; b < d1; b++)
      for (let c = 0; c < d2; c++)
        for (let d = 0; d < d3; d++)
          y[((a * d2 + c) * d1 + b) * d3 + d] = x[((a * d1 + b) * d2 + c) * d3 + d];
  return y;
}

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
function reference(
  encoder: VisionEncoder,
  w: Weights,
  pixels: Float32Array,
  n: number,
): { data: Float64Array; maxAbs: number } {
  const per = pixels.length / n;
  const rows: Mat[] = [];
  for (let i = 0; i < n; i++) {
    const img = pixels.subarray(i * per, (i + 1) * per);
    rows.push(
      encoder.kind === 'llava'
        ? clipReference(encoder.spec as ClipVisionSpec, w, img)
        : internReference(encoder.spec as InternVisionSpec, w, img),
    );
  }
  const data = new Float64Array(rows.reduce((a, m) => a + m.data.length, 0));
  let o = 0;
  for (const m of rows) {
    data.set(m.data, o);
    o += m.data.length;
  }
  return { data, maxAbs: data.reduce((a, b) => Math.max(a, Math.abs(b)), 0) };
}

function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** Encodes with the graph and checks it against the float64 reference; returns the max abs diff. */
async function checkAgainstReference(
  encoder: VisionEncoder,
  w: Weights,
  pixels: Float32Array,
  shape: number[],
): Promise<number> {
  const n = shape.slice(0, -3).reduce((a, b) => a * b, 1);
  const out = await encoder.encode(pixels, shape);
  expect(out.shape).toEqual([n, encoder.tokensPerImage, encoder.hiddenSize]);
  expect(out.data.length).toBe(n * encoder.tokensPerImage * encoder.hiddenSize);
  const ref = reference(encoder, w, pixels, n);
  expect(ref.maxAbs).toBeGreaterThan(1e-2); // features are not trivially zero
  const diff = maxAbsDiff(out.data, ref.data);
  expect(diff).toBeLessThan(TOLERANCE);
  return diff;
}

// ---------------------------------------------------------------------------------------------
// Synthetic checkpoints: a fixture's weights with some added or replaced, to reach the options
// the fixtures leave off (several feature layers, 'full', RMSNorm, qk norm, biases, ...).

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomTensor(random: () => number, shape: number[], scale: number, offset = 0): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: n }, () => offset + (random() * 2 - 1) * scale);
}

function deriveCheckpoint(
  from: string,
  name: string,
  config: (c: Record<string, unknown>) => void,
  tensors: (t: Map<string, { shape: number[]; data: Float32Array }>) => void,
): string {
  const src = Checkpoint.open(from);
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(from, 'tokenizer.json'), join(dir, 'tokenizer.json'));
  const cfg = JSON.parse(readFileSync(join(from, 'config.json'), 'utf8'));
  config(cfg);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  const all = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [n, e] of src.tensors) {
    if (!n.startsWith('language_model.')) all.set(n, { shape: e.shape, data: readTensorF32(e) });
  }
  tensors(all);
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [n, t] of all) {
    header[n] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const data = [...all.values()].map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([len, json, ...data]));
  return dir;
}

/** Smooth, deterministic pixel values in the normalized range. */
function syntheticPixels(n: number, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(n * c * h * w);
  for (let i = 0; i < n; i++)
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++)
          out[((i * c + ch) * h + y) * w + x] = 1.8 * Math.sin(0.21 * x * (ch + 1) + 0.13 * y * (i + 1) + ch);
  return out;
}

// ---------------------------------------------------------------------------------------------

function fixtureCases(name: string): { file: string; shape: number[] }[] {
  const fx = fixture(name);
  if (fx.missing) return [];
  return fx
    .reference()
    .chat.filter((c) => c.pixel_values_file && c.pixel_values_shape)
    .map((c) => ({ file: join(fx.dir, c.pixel_values_file!), shape: c.pixel_values_shape! }));
}

for (const name of ['llava-tiny', 'llava-next-tiny']) {
  const fx = fixture(name);
  describe.skipIf(fx.missing)(fixtureTitle(fx, `${name}: CLIP tower + projector`), () => {
    let ckpt: Checkpoint;
    let encoder: VisionEncoder;
    let w: Weights;
    beforeAll(async () => {
      ckpt = Checkpoint.open(fx.dir);
      encoder = await VisionEncoder.create(ckpt, 'llava');
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
      await checkAgainstReference(encoder, w, readF32(file), shape);
    });

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
      const encoder = await VisionEncoder.create(ckpt, 'llava');
      try {
        expect(encoder.spec).toMatchObject({
          featureLayers: [0, 2],
          selectStrategy: 'full',
          projectorBias: false,
          projectorAct: 'gelu_tanh',
          tokensPerImage: 17,
        });
        const [c] = fixtureCases('llava-tiny');
        await checkAgainstReference(encoder, weightsOf(ckpt), readF32(c.file), c.shape);
      } finally {
        await encoder.dispose();
      }
    });
  },
);

const internFx = fixture('internvl-tiny');
describe.skipIf(internFx.missing)(fixtureTitle(internFx, 'internvl-tiny: InternViT + pixel shuffle'), () => {
  let ckpt: Checkpoint;
  let encoder: VisionEncoder;
  let w: Weights;
  beforeAll(async () => {
    ckpt = Checkpoint.open(internFx.dir);
    encoder = await VisionEncoder.create(ckpt, 'internvl');
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
      await checkAgainstReference(encoder, w, readF32(file), shape);
    },
  );

  it('RMSNorm, qk norm, q/k/v biases, final layernorm and an earlier feature layer', async () => {
    const random = rng(11);
    const D = 32;
    const dir = deriveCheckpoint(
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
      const enc = await VisionEncoder.create(variant, 'internvl');
      try {
        expect(enc.spec).toMatchObject({
          normType: 'rms_norm',
          qkNorm: true,
          qkvBias: true,
          featureLayer: layer === -1 ? 2 : 1,
          finalLayerNorm: layer === -1,
        });
        await checkAgainstReference(enc, weightsOf(variant), pixels, shape);
      } finally {
        await enc.dispose();
      }
    }
  });
});

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
      const encoder = await VisionEncoder.create(ckpt, 'llava');
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
        await checkAgainstReference(encoder, weightsOf(ckpt), syntheticPixels(2, 3, 64, 64), shape);
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
