import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  centerCrop,
  cropImage,
  padImage,
  type ResampleFilter,
  type ResampleKernel,
  resizeBicubic,
  resizeImage,
  toPixelValues,
} from './resize.js';
import type { RgbImage } from './types.js';

/** Deterministic noise, the same generator as the script that made the reference hashes. */
function lcg(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  let x = seed;
  for (let i = 0; i < data.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff;
    data[i] = (x >>> 16) & 255;
  }
  return { width, height, data };
}

function gradient(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = Math.floor((x * 255) / Math.max(width - 1, 1));
      data[i + 1] = Math.floor((y * 255) / Math.max(height - 1, 1));
      data[i + 2] = (x * 7 + y * 13) % 256;
    }
  }
  return { width, height, data };
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex').slice(0, 16);

describe('resizeImage reproduces Pillow and torchvision bit for bit', () => {
  // sha256 prefixes of Pillow 12.3 `Image.resize(..., BICUBIC / BILINEAR)` and torchvision 0.26
  // `resize(uint8 tensor, antialias=True)` outputs (HWC bytes) for the same inputs.
  const refs: [string, number, number, number, number, string, string, string, string][] = [
    ['lcg', 61, 47, 32, 32, '29548e283ef4c46d', '67606b5aea5472ea', '9d07eafaf955470c', '556067772d028883'],
    ['lcg', 47, 61, 17, 80, '8033512c63d2fe08', '4a3533028c72f382', '777bb91102a3aab3', 'a981a46eba6566d0'],
    ['lcg', 9, 7, 64, 48, '0ada617d6cb92b72', 'a942fe482534cd72', '7455f7bad6d7eeb7', '7455f7bad6d7eeb7'],
    ['lcg', 128, 96, 33, 25, '47e36c2e4a8f48e6', 'a5193532bbfe23a6', 'cc5433934db9d0ea', '28ec3866a64452d0'],
    ['lcg', 300, 10, 41, 3, '387045bcd088c723', '387045bcd088c723', '9347805eef230551', '1755f9bfd04b4d36'],
    ['grad', 100, 60, 53, 32, 'd3dc92dfb38d52b2', 'af9bcfc4d1abbdba', 'ddb8f860f03ea5ce', 'dbef51a6880bdc4a'],
    ['grad', 30, 90, 56, 168, '8852ae50a415081a', '72ddb5f692ea1a33', 'ec8f1543181ba84b', '79099b81f404df9d'],
  ];
  it.each(refs)('%s %i×%i → %i×%i', (kind, w, h, W, H, pilCubic, torchCubic, pilLinear, torchLinear) => {
    const src = kind === 'lcg' ? lcg(w, h, w * 1000 + h) : gradient(w, h);
    const run = (filter: ResampleFilter, kernel: ResampleKernel) =>
      sha(resizeImage(src, W, H, { filter, kernel }).data);
    expect(sha(resizeBicubic(src, W, H).data)).toBe(pilCubic);
    expect(run('bicubic', 'torch')).toBe(torchCubic);
    expect(run('bilinear', 'pil')).toBe(pilLinear);
    expect(run('bilinear', 'torch')).toBe(torchLinear);
  });

  it('a window of the result equals the same crop of the full result', () => {
    const src = lcg(97, 61, 5);
    for (const kernel of ['pil', 'torch'] as const) {
      const full = resizeImage(src, 150, 40, { kernel });
      const window = { left: 37, top: 9, width: 50, height: 20 };
      const part = resizeImage(src, 150, 40, { kernel, window });
      expect(part.data).toEqual(cropImage(full, 37, 9, 50, 20).data);
    }
  });

  it('the same size is a copy; a flat colour stays flat', () => {
    const src = lcg(20, 10, 1);
    const same = resizeBicubic(src, 20, 10);
    expect(same.data).toEqual(src.data);
    expect(same.data).not.toBe(src.data);
    const flat: RgbImage = { width: 31, height: 17, data: new Uint8Array(31 * 17 * 3).fill(200) };
    for (const [w, h] of [
      [7, 5],
      [64, 40],
      [31, 3],
    ]) {
      expect(resizeBicubic(flat, w, h).data.every((v) => v === 200)).toBe(true);
    }
  });

  it('refuses sizes that are not positive integers', () => {
    expect(() => resizeBicubic(lcg(4, 4, 1), 0, 4)).toThrow(RangeError);
    expect(() => resizeBicubic(lcg(4, 4, 1), 2.5, 4)).toThrow(RangeError);
  });
});

describe('crop, pad and pixel values', () => {
  const px = (img: RgbImage, x: number, y: number) =>
    Array.from(img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));

  it('centre crop takes floor((H - h) / 2) like transformers, and pads when the crop is larger', () => {
    const src = gradient(10, 7);
    const c = centerCrop(src, 4, 4);
    expect(px(c, 0, 0)).toEqual(px(src, 3, 1));
    const big = centerCrop(src, 13, 8); // 3 more columns: 1 left, 2 right; 1 more row: at the bottom
    expect([big.width, big.height]).toEqual([13, 8]);
    expect(px(big, 0, 0)).toEqual([0, 0, 0]);
    expect(px(big, 1, 0)).toEqual(px(src, 0, 0));
    expect(px(big, 11, 7)).toEqual([0, 0, 0]);
  });

  it('pads with the given colour', () => {
    const p = padImage(gradient(2, 2), { top: 1, bottom: 0, left: 0, right: 2 }, [9, 8, 7]);
    expect([p.width, p.height]).toEqual([4, 3]);
    expect(px(p, 0, 0)).toEqual([9, 8, 7]);
    expect(px(p, 3, 2)).toEqual([9, 8, 7]);
    expect(px(p, 1, 2)).toEqual(px(gradient(2, 2), 1, 1));
  });

  it('toPixelValues is CHW, (x * rescale - mean) / std', () => {
    const img: RgbImage = { width: 2, height: 1, data: new Uint8Array([0, 128, 255, 255, 0, 64]) };
    const v = toPixelValues(img, [0.5, 0.25, 0], [0.5, 0.25, 1], 1 / 255);
    const want = [-1, 1, (128 / 255 - 0.25) / 0.25, -1, 1, 64 / 255];
    for (const [i, w] of want.entries()) expect(v[i]).toBeCloseTo(w, 6);
    const pil = toPixelValues(img, [0.5, 0.25, 0], [0.5, 0.25, 1], 1 / 255, undefined, 0, 'pil');
    for (const [i, w] of want.entries()) expect(pil[i]).toBeCloseTo(w, 6);
  });
});
