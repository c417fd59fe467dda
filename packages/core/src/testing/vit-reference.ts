import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import { cpuBackend } from '../backends/cpu/cpu-backend.js';
import { Checkpoint } from '../loader/checkpoint.js';
import { readTensorF32 } from '../loader/safetensors.js';
import type { VisionTowerSpec } from '../model.js';
import type { VisionAct, VitSpec } from '../onnx/vit.js';
import type { VisionRunner } from '../vision-runner.js';
import { fixture, maxAbsDiff } from './fixtures.js';

/**
 * Test kit for vision towers (used by the model packages): an independent float64 reference built
 * from plain loops over a checkpoint's weights — the layers ViT towers share — and synthetic
 * checkpoints that reach the options the fixtures leave off.
 */
export const TOWER_TOLERANCE = 1e-4;

export type Weights = (name: string) => Float32Array;

export function weightsOf(ckpt: Checkpoint): Weights {
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
export interface Mat {
  rows: number;
  cols: number;
  data: Float64Array;
}

export function mat(rows: number, cols: number): Mat {
  return { rows, cols, data: new Float64Array(rows * cols) };
}

/** x · Wᵀ + b, W stored [out, in] as nn.Linear does. */
export function linear(x: Mat, weight: Float32Array, bias?: Float32Array): Mat {
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

export function layerNorm(x: Mat, gamma: Float32Array, beta: Float32Array, eps: number): Mat {
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

export function rmsNorm(x: Mat, gamma: Float32Array, eps: number): Mat {
  const y = mat(x.rows, x.cols);
  for (let r = 0; r < x.rows; r++) {
    const row = x.data.subarray(r * x.cols, (r + 1) * x.cols);
    const inv = 1 / Math.sqrt(row.reduce((a, b) => a + b * b, 0) / x.cols + eps);
    for (let c = 0; c < x.cols; c++) y.data[r * x.cols + c] = row[c] * inv * gamma[c];
  }
  return y;
}

export function add(a: Mat, b: Mat, scale?: Float32Array): Mat {
  const y = mat(a.rows, a.cols);
  for (let i = 0; i < a.data.length; i++) y.data[i] = a.data[i] + b.data[i] * (scale ? scale[i % a.cols] : 1);
  return y;
}

export function map(x: Mat, f: (v: number) => number): Mat {
  return { rows: x.rows, cols: x.cols, data: x.data.map(f) };
}

/** erf in float64: its Maclaurin series near 0, a continued fraction of erfc further out. */
export function erf(x: number): number {
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

export function actFn(act: VisionAct): (v: number) => number {
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
export function patchEmbed(
  pixels: Float32Array,
  spec: VitSpec,
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
export function withCls(cls: Float32Array, patches: Mat, pos?: Float32Array): Mat {
  const D = patches.cols;
  const y = mat(patches.rows + 1, D);
  y.data.set(cls, 0);
  y.data.set(patches.data, D);
  if (pos) for (let i = 0; i < y.data.length; i++) y.data[i] += pos[i];
  return y;
}

/** Eager multi-head self-attention over one image's tokens (no mask). */
export function selfAttention(q: Mat, k: Mat, v: Mat, numHeads: number): Mat {
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

export function dropFirstRow(x: Mat): Mat {
  return { rows: x.rows - 1, cols: x.cols, data: x.data.slice(x.cols) };
}

export function concatCols(parts: Mat[]): Mat {
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

/** [d0, d1, d2, d3] → [d0, d2, d1, d3] (torch's permute(0, 2, 1, 3) made contiguous). */
export function permute0213(x: Float64Array, d0: number, d1: number, d2: number, d3: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let a = 0; a < d0; a++)
    for (let b = 0; b < d1; b++)
      for (let c = 0; c < d2; c++)
        for (let d = 0; d < d3; d++)
          y[((a * d2 + c) * d1 + b) * d3 + d] = x[((a * d1 + b) * d2 + c) * d3 + d];
  return y;
}

/** A raw little-endian float32 file (the fixtures' pixel values). */
export function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** The float64 reference over N images: [N·L, hidden] flattened, and its largest magnitude. */
export function referenceOver(
  imageReference: (pixels: Float32Array) => Mat,
  pixels: Float32Array,
  n: number,
): { data: Float64Array; maxAbs: number } {
  const per = pixels.length / n;
  const rows: Mat[] = [];
  for (let i = 0; i < n; i++) rows.push(imageReference(pixels.subarray(i * per, (i + 1) * per)));
  const data = new Float64Array(rows.reduce((a, m) => a + m.data.length, 0));
  let o = 0;
  for (const m of rows) {
    data.set(m.data, o);
    o += m.data.length;
  }
  return { data, maxAbs: data.reduce((a, b) => Math.max(a, Math.abs(b)), 0) };
}

/**
 * Encodes with the tower's graph and checks it against the float64 reference of each image
 * (`imageReference`); returns the max abs diff.
 */
export async function checkAgainstReference(
  runner: VisionRunner,
  tower: { tokensPerImage: number; hiddenSize: number },
  imageReference: (pixels: Float32Array) => Mat,
  pixels: Float32Array,
  shape: number[],
): Promise<number> {
  const n = shape.slice(0, -3).reduce((a, b) => a * b, 1);
  const out = await runner.encode(pixels, shape);
  expect(out.shape).toEqual([n, tower.tokensPerImage, tower.hiddenSize]);
  expect(out.data.length).toBe(n * tower.tokensPerImage * tower.hiddenSize);
  const ref = referenceOver(imageReference, pixels, n);
  expect(ref.maxAbs).toBeGreaterThan(1e-2); // features are not trivially zero
  const diff = maxAbsDiff(out.data, ref.data);
  expect(diff).toBeLessThan(TOWER_TOLERANCE);
  return diff;
}

// ---------------------------------------------------------------------------------------------
// Synthetic checkpoints: a fixture's weights with some added or replaced, to reach the options
// the fixtures leave off (several feature layers, 'full', RMSNorm, qk norm, biases, ...).

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomTensor(random: () => number, shape: number[], scale: number, offset = 0): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: n }, () => offset + (random() * 2 - 1) * scale);
}

/** A copy of a checkpoint's non-text weights in `root/name`, with config and tensors edited. */
export function deriveCheckpoint(
  root: string,
  from: string,
  name: string,
  config: (c: Record<string, unknown>) => void,
  tensors: (t: Map<string, { shape: number[]; data: Float32Array }>) => void,
): string {
  const src = Checkpoint.open(from);
  const dir = join(root, name);
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
export function syntheticPixels(n: number, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(n * c * h * w);
  for (let i = 0; i < n; i++)
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++)
          out[((i * c + ch) * h + y) * w + x] = 1.8 * Math.sin(0.21 * x * (ch + 1) + 0.13 * y * (i + 1) + ch);
  return out;
}

// ---------------------------------------------------------------------------------------------

export function fixtureCases(name: string): { file: string; shape: number[] }[] {
  const fx = fixture(name);
  if (fx.missing) return [];
  return fx
    .reference()
    .chat.filter((c) => c.pixel_values_file && c.pixel_values_shape)
    .map((c) => ({ file: join(fx.dir, c.pixel_values_file!), shape: c.pixel_values_shape! }));
}

/**
 * For the rest of the test file, graphs are built into a private cache (so a test always runs the
 * builder's current output) inside a temporary folder, which is returned and removed afterwards.
 */
export function privateGraphCache(): string {
  const tmp = mkdtempSync(join(tmpdir(), 'switchyard-vision-'));
  const saved = process.env.SWITCHYARD_CACHE_DIR;
  process.env.SWITCHYARD_CACHE_DIR = join(tmp, 'cache');
  afterAll(() => {
    if (saved === undefined) delete process.env.SWITCHYARD_CACHE_DIR;
    else process.env.SWITCHYARD_CACHE_DIR = saved;
    rmSync(tmp, { recursive: true, force: true });
  });
  return tmp;
}

/** A tower opened on the CPU backend, with its spec (`tower.key`) at hand for references. */
export type TowerRunner<S> = VisionRunner & { spec: S; tower: VisionTowerSpec };

export async function openTower<S>(ckpt: Checkpoint, tower: VisionTowerSpec): Promise<TowerRunner<S>> {
  const runner = await cpuBackend.createVisionRunner!(ckpt, tower, { dtype: 'float32' });
  return Object.assign(runner, { spec: tower.key as S, tower });
}

/** `checkAgainstReference` for a runner made by `openTower`. */
export function checkTower<S>(
  runner: TowerRunner<S>,
  imageReference: (spec: S, pixels: Float32Array) => Mat,
  pixels: Float32Array,
  shape: number[],
): Promise<number> {
  return checkAgainstReference(
    runner,
    runner.tower,
    (img) => imageReference(runner.spec, img),
    pixels,
    shape,
  );
}
