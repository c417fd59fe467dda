import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../image/decode.js';
import type { ImageProcessorConfig } from '../image/processor-kit.js';
import type { ProcessorOutput, RgbImage } from '../image/types.js';
import { type Fixture, fixture, fixtureTitle } from './fixtures.js';

/** A model family's image processor, as the parity suite calls it. */
export type ImageProcess = (
  img: RgbImage,
  config: ImageProcessorConfig,
  opts?: { kernel?: 'pil' | 'torch' },
) => ProcessorOutput;

const json = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

/** The image processor's settings: processor_config.json's `image_processor` (5.x) or preprocessor_config.json (4.x). */
export function imageProcessorConfig(fx: Fixture): ImageProcessorConfig {
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

/**
 * The pixel values of a fixture's image cases through `process`, against what transformers'
 * processor produced: same shape, bit-exact for PNGs (one uint8 level of JPEG decoding slack), and
 * Pillow's arithmetic within a level on a few pixels.
 */
export function processorParity(name: string, process: ImageProcess): void {
  const fx = fixture(name);
  describe.skipIf(fx.missing)(fixtureTitle(fx, `${name}: pixel values against transformers`), () => {
    const cases = fx.missing ? [] : fx.reference().chat.filter((c) => c.pixel_values_file);
    const config = fx.missing ? {} : imageProcessorConfig(fx);
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
