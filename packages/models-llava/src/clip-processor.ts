import {
  type ImageProcessorConfig,
  type ProcessOptions,
  type ProcessorOutput,
  processingSettings,
  type RgbImage,
  readSizeSpec,
  resizeAndCenterCrop,
  writePixelValues,
} from '@switchyard/core';

/** OpenAI CLIP's mean and std, the defaults of CLIPImageProcessor when config.json has none. */
export const CLIP_DEFAULTS = {
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
};

/**
 * CLIPImageProcessor: resize the shortest edge to `size.shortest_edge` (long edge truncated as
 * transformers computes it) or to `size.height`×`size.width`, centre crop to `crop_size`,
 * rescale, normalize. Returns `[1, 3, H, W]`.
 */
export function clipProcess(
  img: RgbImage,
  config: ImageProcessorConfig,
  opts: ProcessOptions = {},
): ProcessorOutput {
  const c = processingSettings(config, opts, CLIP_DEFAULTS);
  const size = readSizeSpec(config.size ?? { shortest_edge: 224 }, false, 'size');
  const doCrop = config.do_center_crop !== false;
  const crop = doCrop ? readSizeSpec(config.crop_size ?? 224, true, 'crop_size') : undefined;
  const out = resizeAndCenterCrop(img, size, crop, c);
  const pixelValues = new Float32Array(3 * out.width * out.height);
  writePixelValues(out, c, pixelValues, 0);
  return {
    pixelValues,
    shape: [1, 3, out.height, out.width],
    imageSize: [img.height, img.width],
    numTiles: 1,
  };
}
