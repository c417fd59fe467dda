import {
  cropImage,
  type ImageProcessorConfig,
  type ProcessOptions,
  type ProcessorOutput,
  padImage,
  processingSettings,
  processorConfigError,
  type RgbImage,
  readSizeSpec,
  resizeAndCenterCrop,
  resizeImage,
  writePixelValues,
} from '@switchyard/core';
import { CLIP_DEFAULTS } from './clip-processor.js';

/**
 * transformers' `select_best_resolution`: the [height, width] among `pinpoints` that keeps the
 * most of the image's resolution once fitted inside, ties going to the least wasted area.
 */
export function selectBestResolution(height: number, width: number, pinpoints: number[][]): [number, number] {
  let best: [number, number] | undefined;
  let maxEffective = 0;
  let minWasted = Number.POSITIVE_INFINITY;
  for (const [h, w] of pinpoints) {
    const scale = Math.min(w / width, h / height);
    const dw = Math.trunc(width * scale);
    const dh = Math.trunc(height * scale);
    const effective = Math.min(dw * dh, width * height);
    const wasted = w * h - effective;
    if (effective > maxEffective || (effective === maxEffective && wasted < minWasted)) {
      maxEffective = effective;
      minWasted = wasted;
      best = [h, w];
    }
  }
  if (!best) throw processorConfigError('image_grid_pinpoints is empty');
  return best;
}

/** transformers' `get_patch_output_size`: the aspect-preserving size that fits `target`. */
function patchOutputSize(height: number, width: number, target: [number, number]): [number, number] {
  const [th, tw] = target;
  const scaleW = tw / width;
  const scaleH = th / height;
  if (scaleW < scaleH) return [Math.min(Math.ceil(height * scaleW), th), tw];
  return [th, Math.min(Math.ceil(width * scaleH), tw)];
}

function pinpointsOf(config: ImageProcessorConfig): number[][] {
  const p = config.image_grid_pinpoints;
  if (!Array.isArray(p) || p.length === 0 || !p.every((x) => Array.isArray(x) && x.length === 2)) {
    throw processorConfigError('image_grid_pinpoints must be a non-empty list of [height, width] pairs');
  }
  return p as number[][];
}

/** The tile size of LLaVA-NeXT: `crop_size`, else `size` (height×width or shortest_edge squared). */
function llavaNextTile(config: ImageProcessorConfig): { base: [number, number]; patch: number } {
  const size = readSizeSpec(config.size ?? { shortest_edge: 224 }, false, 'size')!;
  const crop = readSizeSpec(config.crop_size, true, 'crop_size');
  const base: [number, number] =
    size.height && size.width ? [size.height, size.width] : [size.shortestEdge!, size.shortestEdge!];
  const patch = crop?.height ?? size.height ?? size.shortestEdge!;
  return { base, patch };
}

/**
 * LlavaNextImageProcessor ("anyres"): pick the best grid resolution, resize keeping the aspect
 * ratio, pad with black (0) centred to that resolution, cut it into `crop_size` tiles (row by
 * row), and put the whole image resized to the base size FIRST. Each tile then goes through
 * CLIP's resize / centre crop / rescale / normalize. Returns `[1, tiles, 3, H, W]` and the
 * original [height, width].
 */
export function llavaNextProcess(
  img: RgbImage,
  config: ImageProcessorConfig,
  opts: ProcessOptions = {},
): ProcessorOutput {
  const c = processingSettings(config, opts, CLIP_DEFAULTS);
  const pinpoints = pinpointsOf(config);
  const { base, patch } = llavaNextTile(config);
  const best = selectBestResolution(img.height, img.width, pinpoints);
  const [nh, nw] = patchOutputSize(img.height, img.width, best);
  const resized = resizeImage(img, nw, nh, { filter: c.filter, kernel: c.kernel });
  const dy = best[0] - nh;
  const dx = best[1] - nw;
  const top = Math.floor(dy / 2);
  const left = Math.floor(dx / 2);
  const padded = padImage(resized, { top, bottom: dy - top, left, right: dx - left });

  const tiles: RgbImage[] = [resizeImage(img, base[1], base[0], { filter: c.filter, kernel: c.kernel })];
  for (let y = 0; y < padded.height; y += patch) {
    for (let x = 0; x < padded.width; x += patch) {
      tiles.push(
        cropImage(padded, x, y, Math.min(patch, padded.width - x), Math.min(patch, padded.height - y)),
      );
    }
  }

  const size = readSizeSpec(config.size ?? { shortest_edge: 224 }, false, 'size');
  const crop =
    config.do_center_crop === false ? undefined : readSizeSpec(config.crop_size ?? 224, true, 'crop_size');
  const done = tiles.map((t) => resizeAndCenterCrop(t, size, crop, c));
  const { width: W, height: H } = done[0];
  if (done.some((t) => t.width !== W || t.height !== H)) {
    throw processorConfigError(
      `the grid tiles do not all come out ${H}×${W}; check crop_size against image_grid_pinpoints`,
    );
  }
  const plane = 3 * W * H;
  const pixelValues = new Float32Array(done.length * plane);
  for (let i = 0; i < done.length; i++) writePixelValues(done[i], c, pixelValues, i * plane);
  return {
    pixelValues,
    shape: [1, done.length, 3, H, W],
    imageSize: [img.height, img.width],
    numTiles: done.length,
  };
}

/**
 * Image tokens one image becomes in a LLaVA-NeXT prompt (LlavaNextProcessor's
 * `_get_number_of_features`): the unpadded grid features, one newline per grid row, and the base
 * tile's features (+ `num_additional_image_tokens`, − 1 under the 'default' strategy, which drops
 * CLS).
 *
 * `config` is the image processor's settings (`image_grid_pinpoints`, `crop_size`/`size`) and may
 * carry the processor's own fields (`patch_size`, `num_additional_image_tokens`,
 * `vision_feature_select_strategy`) or nest the image settings under `image_processor`;
 * `visionConfig` (the checkpoint's `vision_config`) supplies the patch size when the processor
 * does not.
 */
export function llavaNextNumImageTokens(
  origHeight: number,
  origWidth: number,
  config: ImageProcessorConfig,
  visionConfig: Record<string, unknown> = {},
): number {
  const image = (config.image_processor as ImageProcessorConfig | undefined) ?? config;
  const pinpoints = pinpointsOf(image);
  const crop = readSizeSpec(image.crop_size, true, 'crop_size');
  const size = readSizeSpec(image.size ?? { shortest_edge: 224 }, false, 'size')!;
  const height = crop?.height ?? size.height ?? size.shortestEdge!;
  const width = crop?.width ?? size.width ?? size.shortestEdge!;
  const patchSize = Number(config.patch_size ?? image.patch_size ?? visionConfig.patch_size);
  if (!(patchSize > 0)) throw processorConfigError('no patch_size in the processor or vision config');
  const extra = Number(config.num_additional_image_tokens ?? image.num_additional_image_tokens ?? 1);
  const strategy =
    config.vision_feature_select_strategy ?? visionConfig.vision_feature_select_strategy ?? 'default';

  const [bh, bw] = selectBestResolution(origHeight, origWidth, pinpoints);
  const scaleH = Math.floor(bh / height);
  const scaleW = Math.floor(bw / width);
  const ph = Math.floor(height / patchSize);
  const pw = Math.floor(width / patchSize);
  let curH = ph * scaleH;
  let curW = pw * scaleW;
  // int(round(x, 7)): the rounding only guards against 38.99999999 → 38.
  const round7 = (x: number) => Math.trunc(Math.round(x * 1e7) / 1e7);
  if (origWidth / origHeight > curW / curH) {
    const newH = round7(origHeight * (curW / origWidth));
    curH -= Math.floor((curH - newH) / 2) * 2;
  } else {
    const newW = round7(origWidth * (curH / origHeight));
    curW -= Math.floor((curW - newW) / 2) * 2;
  }
  const total = curH * curW + curH + ph * pw + extra;
  return strategy === 'default' ? total - 1 : total;
}
