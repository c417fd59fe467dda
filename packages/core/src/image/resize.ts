import type { RgbImage } from './types.js';

/**
 * Which fixed-point flavour of the antialiased filters (bicubic, bilinear) to reproduce.
 *
 * - `'pil'`: Pillow's `Image.resize` (libImaging/Resample.c): coefficients rounded to 22
 *   fractional bits.
 * - `'torch'`: torchvision's `resize(uint8 tensor, antialias=True)` on the CPU (ATen's uint8
 *   `_upsample_*_aa` kernels, themselves a port of Pillow's): the same double-precision weights,
 *   but rounded to int16 with a precision chosen from the largest weight of each pass.
 *
 * Both filter horizontally first, then vertically, through a rounded and clipped uint8
 * intermediate, so they differ by at most one level on a few pixels. Transformers 5.x image
 * processors default to the torchvision backend (what the parity fixtures were made with); the
 * `*Pil` processors and transformers 4.x use Pillow.
 */
export type ResampleKernel = 'pil' | 'torch';

/** Resampling filters of `resample` in HF configs: 2 = bilinear, 3 = bicubic (PIL's numbering). */
export type ResampleFilter = 'bilinear' | 'bicubic';

/** Keys' cubic convolution kernel with a = -0.5 (Catmull-Rom), in Pillow's arithmetic. */
function cubicPil(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** The same kernel in ATen's arithmetic (`cubic_convolution1/2`); equal up to the last bit. */
function cubicTorch(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

/** The triangle kernel of bilinear filtering (the same in Pillow and ATen). */
function triangle(x: number): number {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
}

interface Coeffs {
  /** Fixed-point coefficients per output pixel, `ksize` apiece (zero past `size[i]`). */
  k: Int32Array;
  ksize: number;
  /** First source index per output pixel. */
  min: Int32Array;
  /** Number of source pixels per output pixel. */
  size: Int32Array;
  /** Fractional bits of the fixed-point coefficients. */
  precision: number;
}

/**
 * Filter weights for resampling one axis from `inSize` to `outSize` (Pillow's
 * `precompute_coeffs` + `normalize_coeffs_8bpc`, or ATen's `_compute_indices_int16_weights_aa`).
 * When downscaling, the filter is stretched by the scale factor (antialiasing).
 */
function coefficients(
  inSize: number,
  outSize: number,
  filter: ResampleFilter,
  kernel: ResampleKernel,
): Coeffs {
  const fn = filter === 'bilinear' ? triangle : kernel === 'pil' ? cubicPil : cubicTorch;
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = (filter === 'bilinear' ? 1 : 2) * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const weights = new Float64Array(outSize * ksize);
  const min = new Int32Array(outSize);
  const size = new Int32Array(outSize);
  const inv = 1 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero; a negative start is clamped to 0 right after.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.max(Math.min(Math.trunc(center + support + 0.5), inSize) - xmin, 0), ksize);
    let total = 0;
    const base = xx * ksize;
    for (let x = 0; x < n; x++) {
      const w = fn((x + xmin - center + 0.5) * inv);
      weights[base + x] = w;
      total += w;
    }
    if (total !== 0) for (let x = 0; x < n; x++) weights[base + x] /= total;
    min[xx] = xmin;
    size[xx] = n;
  }
  // Pillow: 32 - 8 - 2 = 22 bits. ATen: the most bits that keep the largest weight in int16.
  let precision = 22;
  if (kernel === 'torch') {
    let wMax = weights[0];
    for (let i = 0; i < weights.length; i++) if (wMax < weights[i]) wMax = weights[i];
    for (precision = 0; precision < 22; precision++) {
      if (Math.trunc(0.5 + wMax * 2 ** (precision + 1)) >= 1 << 15) break;
    }
  }
  const one = 2 ** precision;
  const k = new Int32Array(weights.length);
  for (let i = 0; i < weights.length; i++) {
    const v = weights[i] * one;
    k[i] = v < 0 ? Math.trunc(-0.5 + v) : Math.trunc(0.5 + v);
  }
  return { k, ksize, min, size, precision };
}

/*
 * The fixed-point sums stay inside int32 (|sum| ≤ 255 × Σ|k| + half < 2^31 for ≤ 22 fractional
 * bits), so `>>` is the arithmetic shift the C code does, and it floors negative sums the same way.
 */

/** Output columns `x0 … x0 + outW - 1` of the horizontal pass, for source rows `y0 … y0 + rows - 1`. */
function horizontal(src: RgbImage, c: Coeffs, x0: number, outW: number, y0: number, rows: number): RgbImage {
  // A clamped array clips each stored sum to 0…255, as the C code's clip does.
  const out = new Uint8ClampedArray(outW * rows * 3);
  const { k, ksize, min, size, precision } = c;
  const half = 1 << (precision - 1);
  const data = src.data;
  const rowBytes = src.width * 3;
  let o = 0;
  for (let y = 0; y < rows; y++) {
    const row = (y0 + y) * rowBytes;
    for (let xx = x0; xx < x0 + outW; xx++) {
      const kb = xx * ksize;
      const n = size[xx];
      let p = row + min[xx] * 3;
      let r = half;
      let g = half;
      let b = half;
      for (let x = 0; x < n; x++, p += 3) {
        const w = k[kb + x];
        r += data[p] * w;
        g += data[p + 1] * w;
        b += data[p + 2] * w;
      }
      out[o++] = r >> precision;
      out[o++] = g >> precision;
      out[o++] = b >> precision;
    }
  }
  return { width: outW, height: rows, data: new Uint8Array(out.buffer) };
}

/** Output rows `y0 … y0 + outH - 1` of the vertical pass; `src` starts at source row `srcY0`. */
function vertical(src: RgbImage, c: Coeffs, y0: number, outH: number, srcY0: number): RgbImage {
  const stride = src.width * 3;
  const out = new Uint8ClampedArray(stride * outH);
  const { k, ksize, min, size, precision } = c;
  const half = 1 << (precision - 1);
  const data = src.data;
  const acc = new Int32Array(stride);
  for (let yy = 0; yy < outH; yy++) {
    const kb = (y0 + yy) * ksize;
    const ymin = min[y0 + yy] - srcY0;
    const n = size[y0 + yy];
    acc.fill(half);
    // Row by row, so the source is read in order; integer sums make the order irrelevant.
    for (let y = 0; y < n; y++) {
      const w = k[kb + y];
      const row = (ymin + y) * stride;
      for (let i = 0; i < stride; i++) acc[i] += data[row + i] * w;
    }
    const base = yy * stride;
    for (let i = 0; i < stride; i++) out[base + i] = acc[i] >> precision;
  }
  return { width: src.width, height: outH, data: new Uint8Array(out.buffer) };
}

export interface ResizeOptions {
  /** Default 'bicubic'. */
  filter?: ResampleFilter;
  /** Default 'pil'. */
  kernel?: ResampleKernel;
  /**
   * Compute only this window of the `width`×`height` result (what a crop of the full resize
   * would give, bit for bit, without materialising the rest).
   */
  window?: { left: number; top: number; width: number; height: number };
}

/**
 * Resizes with the antialiased filters of Pillow's `Image.resize` (BICUBIC by default) — same
 * coefficients (support stretched by the downscale factor), same fixed-point rounding, horizontal
 * pass then vertical pass through a rounded and clipped uint8 intermediate — so the output is
 * bit-identical to Pillow's. `kernel: 'torch'` gives torchvision's uint8 antialiased resize
 * instead; `window` computes only part of the result.
 */
export function resizeImage(
  img: RgbImage,
  width: number,
  height: number,
  opts: ResizeOptions = {},
): RgbImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`resize: the target size must be positive integers, got ${width}×${height}`);
  }
  const filter = opts.filter ?? 'bicubic';
  const kernel = opts.kernel ?? 'pil';
  const win = opts.window ?? { left: 0, top: 0, width, height };
  if (win.left < 0 || win.top < 0 || win.left + win.width > width || win.top + win.height > height) {
    throw new RangeError(
      `resize: window ${win.width}×${win.height}+${win.left}+${win.top} is outside ${width}×${height}`,
    );
  }
  let cur = img;
  let srcY0 = 0;
  const needV = height !== img.height;
  const cv = needV ? coefficients(img.height, height, filter, kernel) : undefined;
  if (width !== img.width) {
    // Only the source rows the vertical pass will read (Pillow does the same).
    let y0 = win.top;
    let rows = win.height;
    if (cv) {
      y0 = cv.min[win.top];
      const last = win.top + win.height - 1;
      rows = cv.min[last] + cv.size[last] - y0;
    }
    cur = horizontal(img, coefficients(img.width, width, filter, kernel), win.left, win.width, y0, rows);
    srcY0 = y0;
  } else if (win.left !== 0 || win.width !== width) {
    cur = cropImage(img, win.left, 0, win.width, img.height);
  }
  if (cv) return vertical(cur, cv, win.top, win.height, srcY0);
  if (width !== img.width) return cur;
  return cropImage(cur, 0, win.top, cur.width, win.height);
}

/** Pillow's `Image.resize((width, height), Image.BICUBIC)` on an RGB image, bit for bit. */
export function resizeBicubic(
  img: RgbImage,
  width: number,
  height: number,
  kernel: ResampleKernel = 'pil',
): RgbImage {
  return resizeImage(img, width, height, { kernel });
}

/** The `height`×`width` window whose top-left corner is (`left`, `top`); it must lie inside the image. */
export function cropImage(img: RgbImage, left: number, top: number, width: number, height: number): RgbImage {
  if (left < 0 || top < 0 || left + width > img.width || top + height > img.height) {
    throw new RangeError(
      `cropImage: ${width}×${height}+${left}+${top} is outside the ${img.width}×${img.height} image`,
    );
  }
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * img.width + left) * 3;
    out.set(img.data.subarray(from, from + width * 3), y * width * 3);
  }
  return { width, height, data: out };
}

/**
 * Pads with a constant colour (default black, 0): `top`/`bottom`/`left`/`right` pixels on each
 * side. LLaVA-NeXT's `_pad_for_patching` pads the resized uint8 image with 0 (black, which is
 * `-mean/std` after normalisation), not with the mean colour.
 */
export function padImage(
  img: RgbImage,
  pad: { top: number; bottom: number; left: number; right: number },
  fill: [number, number, number] = [0, 0, 0],
): RgbImage {
  const width = img.width + pad.left + pad.right;
  const height = img.height + pad.top + pad.bottom;
  const out = new Uint8Array(width * height * 3);
  if (fill[0] !== 0 || fill[1] !== 0 || fill[2] !== 0) {
    for (let i = 0; i < width * height; i++) out.set(fill, i * 3);
  }
  for (let y = 0; y < img.height; y++) {
    const from = y * img.width * 3;
    out.set(img.data.subarray(from, from + img.width * 3), ((y + pad.top) * width + pad.left) * 3);
  }
  return { width, height, data: out };
}

/**
 * Center crop to `height`×`width` as transformers does it: offsets `floor((H - h) / 2)` and
 * `floor((W - w) / 2)`; where the crop is larger than the image, it is first zero-padded
 * (the extra pixel of an odd difference going to the bottom/right).
 */
export function centerCrop(img: RgbImage, width: number, height: number): RgbImage {
  let cur = img;
  if (width > cur.width || height > cur.height) {
    const dw = Math.max(width - cur.width, 0);
    const dh = Math.max(height - cur.height, 0);
    cur = padImage(cur, {
      left: Math.floor(dw / 2),
      right: Math.floor((dw + 1) / 2),
      top: Math.floor(dh / 2),
      bottom: Math.floor((dh + 1) / 2),
    });
  }
  const top = Math.floor((cur.height - height) / 2);
  const left = Math.floor((cur.width - width) / 2);
  if (top === 0 && left === 0 && cur.width === width && cur.height === height) return cur;
  return cropImage(cur, left, top, width, height);
}

/**
 * Float arithmetic of the rescale + normalize step. `'torch'`: transformers' torchvision backend
 * fuses the two, `(x - mean/rescale) / (std/rescale)` in float32. `'pil'`: its NumPy backend
 * rescales in float64, casts to float32, then normalizes in float32. They differ by an ulp.
 */
export type NormalizeArithmetic = 'torch' | 'pil';

/**
 * uint8 HWC → float32 CHW: `(x * rescale - mean) / std` per channel (pass mean 0 and std 1 to
 * skip normalizing, `rescale = 1` to skip rescaling), in the float32 arithmetic of transformers'
 * torchvision backend by default. Writes into `out` at `offset` when given.
 */
export function toPixelValues(
  img: RgbImage,
  mean: readonly number[],
  std: readonly number[],
  rescale: number,
  out?: Float32Array,
  offset = 0,
  arithmetic: NormalizeArithmetic = 'torch',
): Float32Array {
  const plane = img.width * img.height;
  const dst = out ?? new Float32Array(plane * 3);
  const f = Math.fround;
  const inv = 1 / rescale;
  for (let c = 0; c < 3; c++) {
    const base = offset + c * plane;
    const m32 = f(mean[c] ?? mean[0]);
    const s32 = f(std[c] ?? std[0]);
    if (arithmetic === 'pil') {
      for (let i = 0; i < plane; i++) dst[base + i] = f(f(f(img.data[i * 3 + c] * rescale) - m32) / s32);
    } else {
      const m = f(m32 * inv);
      const s = f(s32 * inv);
      for (let i = 0; i < plane; i++) dst[base + i] = f(f(img.data[i * 3 + c] - m) / s);
    }
  }
  return dst;
}
