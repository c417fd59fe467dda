import type { RgbImage } from './types.js';

/**
 * Which fixed-point flavour of the antialiased bicubic filter to reproduce.
 *
 * - `'pil'`: Pillow's `Image.resize(BICUBIC)` (libImaging/Resample.c): coefficients rounded to
 *   22 fractional bits.
 * - `'torch'`: torchvision's `resize(uint8 tensor, BICUBIC, antialias=True)` on the CPU (ATen's
 *   `_upsample_bicubic2d_aa` uint8 kernel, itself a port of Pillow's): the same double-precision
 *   weights, but rounded to int16 with a precision chosen from the largest weight of each pass.
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
function coefficients(inSize: number, outSize: number, filter: ResampleFilter, kernel: ResampleKernel): Coeffs {
  const fn = filter === 'bilinear' ? triangle : kernel === 'pil' ? cubicPil : cubicTorch;
  const scale = inSize / outSize;
  const filterScale = scale < 1 ? 1 : scale;
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

/** Fixed-point sum → uint8: shift out the fraction (the half was added up front) and clip. */
function clip8(acc: number, precision: number): number {
  const v = Math.floor(acc / 2 ** precision);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Output columns `x0 … x0 + outW - 1` of the horizontal pass, for source rows `y0 … y0 + rows - 1`. */
function horizontal(src: RgbImage, c: Coeffs, x0: number, outW: number, y0: number, rows: number): RgbImage {
  const out = new Uint8Array(outW * rows * 3);
  const half = 2 ** (c.precision - 1);
  const data = src.data;
  for (let y = 0; y < rows; y++) {
    const row = (y0 + y) * src.width * 3;
    for (let xx = 0; xx < outW; xx++) {
      const kb = (x0 + xx) * c.ksize;
      const xmin = c.min[x0 + xx];
      const n = c.size[x0 + xx];
      let r = half;
      let g = half;
      let b = half;
      for (let x = 0; x < n; x++) {
        const w = c.k[kb + x];
        const p = row + (xmin + x) * 3;
        r += data[p] * w;
        g += data[p + 1] * w;
        b += data[p + 2] * w;
      }
      const o = (y * outW + xx) * 3;
      out[o] = clip8(r, c.precision);
      out[o + 1] = clip8(g, c.precision);
      out[o + 2] = clip8(b, c.precision);
    }
  }
  return { width: outW, height: rows, data: out };
}

/** Output rows `y0 … y0 + outH - 1` of the vertical pass; `src` starts at source row `srcY0`. */
function vertical(src: RgbImage, c: Coeffs, y0: number, outH: number, srcY0: number): RgbImage {
  const stride = src.width * 3;
  const out = new Uint8Array(stride * outH);
  const half = 2 ** (c.precision - 1);
  const data = src.data;
  for (let yy = 0; yy < outH; yy++) {
    const kb = (y0 + yy) * c.ksize;
    const ymin = c.min[y0 + yy] - srcY0;
    const n = c.size[y0 + yy];
    for (let i = 0; i < stride; i++) {
      let acc = half;
      for (let y = 0; y < n; y++) acc += data[(ymin + y) * stride + i] * c.k[kb + y];
      out[yy * stride + i] = clip8(acc, c.precision);
    }
  }
  return { width: src.width, height: outH, data: out };
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
export function resizeImage(img: RgbImage, width: number, height: number, opts: ResizeOptions = {}): RgbImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`resize: the target size must be positive integers, got ${width}×${height}`);
  }
  const filter = opts.filter ?? 'bicubic';
  const kernel = opts.kernel ?? 'pil';
  const win = opts.window ?? { left: 0, top: 0, width, height };
  if (win.left < 0 || win.top < 0 || win.left + win.width > width || win.top + win.height > height) {
    throw new RangeError(`resize: window ${win.width}×${win.height}+${win.left}+${win.top} is outside ${width}×${height}`);
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
export function resizeBicubic(img: RgbImage, width: number, height: number, kernel: ResampleKernel = 'pil'): RgbImage {
  return resizeImage(img, width, height, { kernel });
}

/** The `height`×`width` window whose top-left corner is (`left`, `top`); it must lie inside the image. */
export function cropImage(img: RgbImage, left: number, top: number, width: number, height: number): RgbImage {
  if (left < 0 || top < 0 || left + width > img.width || top + height > img.height) {
    throw new RangeError(`cropImage: ${width}×${height}+${left}+${top} is outside the ${img.width}×${img.height} image`);
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
 * uint8 HWC → float32 CHW: `(x * rescale - mean) / std` per channel, computed in float32 the way
 * transformers' torchvision backend fuses it (`(x - mean/rescale) / (std/rescale)`); pass
 * `rescale = 1` and mean 0 / std 1 to get raw values. Writes into `out` at `offset` when given.
 */
export function toPixelValues(
  img: RgbImage,
  mean: readonly number[],
  std: readonly number[],
  rescale: number,
  out?: Float32Array,
  offset = 0,
): Float32Array {
  const plane = img.width * img.height;
  const dst = out ?? new Float32Array(plane * 3);
  const f = Math.fround;
  const inv = 1 / rescale;
  for (let c = 0; c < 3; c++) {
    const m = f(f(mean[c] ?? mean[0]) * inv);
    const s = f(f(std[c] ?? std[0]) * inv);
    const base = offset + c * plane;
    for (let i = 0; i < plane; i++) dst[base + i] = f(f(img.data[i * 3 + c] - m) / s);
  }
  return dst;
}
