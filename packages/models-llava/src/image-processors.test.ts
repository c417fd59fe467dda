import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { centerCrop, type RgbImage, resizeImage, shortestEdgeSize } from '@switchyard/core';
import { fixture, fixturesRoot, fixtureTitle, processorParity } from '@switchyard/core/testing';
import { describe, expect, it } from 'vitest';
import { clipProcess } from './clip-processor.js';
import { llavaNextNumImageTokens, llavaNextProcess, selectBestResolution } from './llava-next-processor.js';

const json = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

processorParity('llava-tiny', clipProcess);
processorParity('llava-next-tiny', llavaNextProcess);

const next = fixture('llava-next-tiny');
describe.skipIf(next.missing)(fixtureTitle(next, 'llava-next-tiny: image tokens per image'), () => {
  it('llavaNextNumImageTokens equals the <image> tokens transformers put in input_ids', () => {
    const config = json(join(next.dir, 'config.json'));
    const processor = json(join(next.dir, 'processor_config.json'));
    const tokenId = config.image_token_index ?? config.image_token_id;
    const cases = next.reference().chat.filter((c) => c.image_sizes);
    expect(cases.length).toBeGreaterThan(0);
    for (const c of cases) {
      const [h, w] = c.image_sizes![0];
      const inPrompt = c.input_ids!.filter((id) => id === tokenId).length;
      expect(llavaNextNumImageTokens(h, w, processor, config.vision_config)).toBe(inPrompt);
      // The image processor's settings alone, with the patch size from the vision config.
      expect(llavaNextNumImageTokens(h, w, processor.image_processor, config.vision_config)).toBe(inPrompt);
    }
  });
});

describe('llavaNextNumImageTokens against LlavaNextProcessor._get_number_of_features', () => {
  // LLaVA-1.6 settings (336 px tiles, patch 14); counts computed by transformers 5.17.
  const v16 = {
    image_grid_pinpoints: [
      [336, 672],
      [672, 336],
      [672, 672],
      [1008, 336],
      [336, 1008],
    ],
    crop_size: { height: 336, width: 336 },
    size: { shortest_edge: 336 },
    patch_size: 14,
    num_additional_image_tokens: 1,
    vision_feature_select_strategy: 'default',
  };
  it.each([
    [14, 14, 1176],
    [20, 3000, 576], // so wide that unpadding leaves no grid row: the base tile alone
    [30, 1920, 722],
    [60, 64, 1224],
    [90, 40, 840],
    [100, 21, 744],
    [333, 250, 1032],
    [480, 640, 2340],
    [768, 1024, 2340],
    [1000, 720, 2256],
    [1080, 1920, 1948],
    [2000, 100, 936],
    [2000, 3000, 2144],
  ])('%i×%i → %i', (h, w, n) => {
    expect(llavaNextNumImageTokens(h, w, v16)).toBe(n);
  });
  it("counts CLS under the 'full' strategy", () => {
    expect(llavaNextNumImageTokens(480, 640, { ...v16, vision_feature_select_strategy: 'full' })).toBe(2341);
  });
});

describe('processor geometry', () => {
  it('select_best_resolution: most effective pixels, then least waste', () => {
    const pins = [
      [32, 64],
      [64, 32],
      [64, 64],
      [32, 96],
      [96, 32],
    ];
    expect(selectBestResolution(48, 64, pins)).toEqual([64, 64]);
    expect(selectBestResolution(90, 30, pins)).toEqual([96, 32]);
    expect(selectBestResolution(10, 200, pins)).toEqual([32, 96]);
  });

  const img = (w: number, h: number): RgbImage => {
    const data = new Uint8Array(w * h * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 37 + (i >> 5)) & 255;
    return { width: w, height: h, data };
  };
  const clipConfig = {
    size: { shortest_edge: 64 },
    crop_size: { height: 64, width: 64 },
    image_mean: [0.5, 0.5, 0.5],
    image_std: [0.5, 0.5, 0.5],
  };

  it('CLIP resizes straight into the crop window, the same as resize then centre crop', () => {
    const src = img(173, 91);
    const [h, w] = shortestEdgeSize(91, 173, 64);
    const full = centerCrop(resizeImage(src, w, h, { kernel: 'torch' }), 64, 64);
    const out = clipProcess(src, clipConfig);
    expect(out.shape).toEqual([1, 3, 64, 64]);
    for (const i of [0, 1000, 4095])
      expect(out.pixelValues[i]).toBeCloseTo((full.data[i * 3] / 255 - 0.5) / 0.5, 5);
  });

  it('CLIP on a very elongated image stays cheap (only the crop is computed)', () => {
    const out = clipProcess(img(20000, 14), clipConfig);
    expect(out.shape).toEqual([1, 3, 64, 64]);
  });

  it("the demo vision model's settings give [1, 3, 64, 64]", () => {
    const path = join(fixturesRoot(), '..', 'demo-models', 'switchyard-demo-vision');
    const config = existsSync(join(path, 'processor_config.json'))
      ? json(join(path, 'processor_config.json')).image_processor
      : { ...clipConfig, image_mean: undefined, image_std: undefined };
    expect(clipProcess(img(120, 80), config).shape).toEqual([1, 3, 64, 64]);
  });

  it('LLaVA-NeXT pads with black (0 before normalisation), the odd pixel at the bottom', () => {
    const white: RgbImage = { width: 100, height: 60, data: new Uint8Array(100 * 60 * 3).fill(255) };
    const config = {
      size: { shortest_edge: 32 },
      crop_size: { height: 32, width: 32 },
      image_grid_pinpoints: [[64, 64]],
      image_mean: [0, 0, 0],
      image_std: [1, 1, 1],
    };
    const out = llavaNextProcess(white, config);
    expect(out.shape).toEqual([1, 5, 3, 32, 32]);
    expect(out.imageSize).toEqual([60, 100]);
    // 100×60 → 64×39 in a 64×64 canvas: 12 rows of padding above, 13 below.
    const px = (tile: number, y: number, x: number) => out.pixelValues[tile * 3 * 1024 + y * 32 + x];
    expect(px(0, 0, 0)).toBeCloseTo(1); // the base tile is the whole image squeezed
    expect(px(1, 11, 5)).toBe(0);
    expect(px(1, 12, 5)).toBeCloseTo(1);
    expect(px(3, 18, 5)).toBeCloseTo(1); // canvas row 50 = last image row
    expect(px(3, 19, 5)).toBe(0); // canvas row 51: padding
  });

  it('refuses resampling filters it does not reproduce', () => {
    expect(() => clipProcess(img(20, 20), { ...clipConfig, resample: 1 })).toThrow(
      /resample 1 is not supported/,
    );
  });
});
