import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  decodeImage,
  type ImageProcessorConfig,
  type ProcessorOutput,
  type RgbImage,
} from '@switchyard/core';
import { type Fixture, fixture, fixtureTitle } from '@switchyard/core/testing';
import { describe, expect, it } from 'vitest';
import { internvlProcess, optimalTiledCanvas } from './internvl-processor.js';

const json = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

/** The image processor's settings: processor_config.json's `image_processor` (5.x) or preprocessor_config.json (4.x). */
function imageConfig(fx: Fixture): ImageProcessorConfig {
  const processor = json(join(fx.dir, 'processor_config.json'));
  return processor.image_processor ?? json(join(fx.dir, 'preprocessor_config.json'));
}

function diff(a: Float32Array, b: Float32Array): { mean: number; max: number } {
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    sum += d;
    if (d > max) max = d;
  }
  return { mean: sum / a.length, max };
}

type Process = (
  img: RgbImage,
  config: ImageProcessorConfig,
  opts?: { kernel?: 'pil' | 'torch' },
) => ProcessorOutput;

const suites: [string, Process][] = [['internvl-tiny', internvlProcess]];

for (const [name, process] of suites) {
  const fx = fixture(name);
  describe.skipIf(fx.missing)(fixtureTitle(fx, `${name}: pixel values against transformers`), () => {
    const cases = fx.missing ? [] : fx.reference().chat.filter((c) => c.pixel_values_file);
    const config = fx.missing ? {} : imageConfig(fx);
    const load = (file: string) =>
      decodeImage(new Uint8Array(readFileSync(join(fx.dir, '..', 'images', file))));

    it.each(cases.map((c, i) => ({ i, c, image: c.images![0] })))(
      'case $i ($image): same shape, mean |Δ| ≤ 0.05 (bit-exact in practice)',
      async ({ c }) => {
        const img = await load(c.images![0]);
        const out = process(img, config);
        expect(out.shape).toEqual(c.pixel_values_shape);
        const want = fx.logits(c.pixel_values_file!);
        expect(out.pixelValues.length).toBe(want.length);
        const d = diff(out.pixelValues, want);
        expect(d.mean).toBeLessThanOrEqual(0.05);
        // transformers 5.x ran its torchvision backend, whose uint8 arithmetic we reproduce: the
        // only slack left is one uint8 level from a JPEG decoder (1/255/std ≈ 0.0175).
        expect(d.max).toBeLessThanOrEqual(c.images![0].endsWith('.png') ? 0 : 0.018);
        if (c.image_sizes) expect(out.imageSize).toEqual(c.image_sizes[0]);
        // Pillow's arithmetic (the *Pil processors) differs by a level on a few pixels only.
        const pil = diff(process(img, config, { kernel: 'pil' }).pixelValues, want);
        expect(pil.mean).toBeLessThanOrEqual(0.05);
      },
    );
  });
}

describe('processor geometry', () => {
  it('InternVL grid: closest aspect ratio, bigger grid on a tie only while the image fills it', () => {
    expect(optimalTiledCanvas(48, 64, 56, 56, 1, 6)).toEqual([3, 2]);
    expect(optimalTiledCanvas(90, 30, 56, 56, 1, 6)).toEqual([1, 3]);
    expect(optimalTiledCanvas(40, 40, 56, 56, 1, 6)).toEqual([1, 1]);
    expect(optimalTiledCanvas(99, 100, 56, 56, 1, 6)).toEqual([2, 2]);
    expect(optimalTiledCanvas(448, 448, 448, 448, 2, 12)).toEqual([2, 2]);
  });

  const img = (w: number, h: number): RgbImage => {
    const data = new Uint8Array(w * h * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 37 + (i >> 5)) & 255;
    return { width: w, height: h, data };
  };
  it('InternVL without crop_to_patches is one resized tile', () => {
    const out = internvlProcess(img(90, 30), { size: { height: 56, width: 56 }, crop_to_patches: false });
    expect(out.shape).toEqual([1, 3, 56, 56]);
    expect(out.numTiles).toBe(1);
  });
});
