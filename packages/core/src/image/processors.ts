import { SwitchyardError } from '../errors.js';
import {
  centerCrop,
  cropImage,
  padImage,
  type ResampleFilter,
  type ResampleKernel,
  resizeImage,
  toPixelValues,
} from './resize.js';
import type { ProcessorOutput, RgbImage } from './types.js';

/** An image processor's settings as transformers saves them (snake_case JSON). */
export type ImageProcessorConfig = Record<string, unknown>;

export interface ProcessOptions {
  /**
   * Which transformers backend to reproduce bit for bit — its resampling fixed point and its
   * rescale/normalize float arithmetic. `'torch'` (default): transformers 5.x, whose image
   * processors run on torchvision (what the parity fixtures were made with). `'pil'`: the
   * `*ImageProcessorPil` classes and transformers 4.x. See {@link ResampleKernel}.
   */
  kernel?: ResampleKernel;
}

const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

function configError(message: string): SwitchyardError {
  return new SwitchyardError(`image processor config: ${message}`, 'model_load');
}

interface SizeSpec {
  height?: number;
  width?: number;
  shortestEdge?: number;
  longestEdge?: number;
}

/** transformers' `get_size_dict`: an int, [h, w], or a dict of height/width/shortest_edge/longest_edge. */
function sizeSpec(value: unknown, defaultToSquare: boolean, name: string): SizeSpec | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number')
    return defaultToSquare ? { height: value, width: value } : { shortestEdge: value };
  if (Array.isArray(value) && value.length === 2)
    return { height: Number(value[0]), width: Number(value[1]) };
  if (typeof value === 'object') {
    const o = value as Record<string, unknown>;
    const num = (k: string) => (typeof o[k] === 'number' ? (o[k] as number) : undefined);
    const s: SizeSpec = {
      height: num('height'),
      width: num('width'),
      shortestEdge: num('shortest_edge'),
      longestEdge: num('longest_edge'),
    };
    if ((s.height && s.width) || s.shortestEdge) return s;
  }
  throw configError(`${name} ${JSON.stringify(value)} is not a size transformers understands`);
}

interface Common {
  doResize: boolean;
  doRescale: boolean;
  doNormalize: boolean;
  rescale: number;
  mean: number[];
  std: number[];
  filter: ResampleFilter;
  kernel: ResampleKernel;
}

function common(config: ImageProcessorConfig, opts: ProcessOptions): Common {
  const bool = (k: string, d: boolean) => (typeof config[k] === 'boolean' ? (config[k] as boolean) : d);
  const triple = (k: string, d: number[]) => {
    const v = config[k];
    if (typeof v === 'number') return [v, v, v];
    return Array.isArray(v) && v.length > 0 ? v.map(Number) : d;
  };
  const resample = config.resample ?? 3;
  if (resample !== 2 && resample !== 3) {
    throw configError(
      `resample ${JSON.stringify(resample)} is not supported (2 = bilinear and 3 = bicubic are)`,
    );
  }
  return {
    doResize: bool('do_resize', true),
    doRescale: bool('do_rescale', true),
    doNormalize: bool('do_normalize', true),
    rescale: typeof config.rescale_factor === 'number' ? config.rescale_factor : 1 / 255,
    mean: triple('image_mean', CLIP_MEAN),
    std: triple('image_std', CLIP_STD),
    filter: resample === 2 ? 'bilinear' : 'bicubic',
    kernel: opts.kernel ?? 'torch',
  };
}

/** uint8 → float32 CHW, with whichever of rescale / normalize the config turns on. */
function pixels(img: RgbImage, c: Common, out: Float32Array, offset: number): void {
  const mean = c.doNormalize ? c.mean : [0, 0, 0];
  const std = c.doNormalize ? c.std : [1, 1, 1];
  toPixelValues(img, mean, std, c.doRescale ? c.rescale : 1, out, offset, c.kernel);
}

/**
 * transformers' `get_resize_output_image_size(..., default_to_square=False)`: the short side
 * becomes `size`, the long side `int(size * long / short)` (truncated).
 */
export function shortestEdgeSize(height: number, width: number, size: number): [number, number] {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  const newLong = Math.trunc((size * long) / short);
  return width <= height ? [newLong, size] : [size, newLong];
}

/** Python's round(): halves to even. */
function pyRound(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The [height, width] a size spec resizes an image to (CLIP-style: shortest edge or exact). */
function resizeTarget(height: number, width: number, size: SizeSpec): [number, number] {
  if (size.shortestEdge && size.longestEdge) {
    // get_size_with_aspect_ratio: the shortest edge, reduced so the longest stays within bounds.
    let short = size.shortestEdge;
    let raw: number | undefined;
    const mn = Math.min(height, width);
    const mx = Math.max(height, width);
    if ((mx / mn) * short > size.longestEdge) {
      raw = (size.longestEdge * mn) / mx;
      short = pyRound(raw);
    }
    if ((height <= width && height === short) || (width <= height && width === short)) return [height, width];
    const s = raw ?? short;
    return width < height
      ? [Math.trunc((s * height) / width), short]
      : [short, Math.trunc((s * width) / height)];
  }
  if (size.shortestEdge) return shortestEdgeSize(height, width, size.shortestEdge);
  return [size.height!, size.width!];
}

/** Resize (optionally straight into the centre-crop window), then centre crop: CLIP's geometry. */
function resizeAndCrop(
  img: RgbImage,
  size: SizeSpec | undefined,
  crop: SizeSpec | undefined,
  c: Common,
): RgbImage {
  let cur = img;
  if (c.doResize && size) {
    const [h, w] = resizeTarget(cur.height, cur.width, size);
    if (h === cur.height && w === cur.width) {
      // no-op, as in both backends
    } else if (crop && crop.height! <= h && crop.width! <= w) {
      const top = Math.floor((h - crop.height!) / 2);
      const left = Math.floor((w - crop.width!) / 2);
      const window = { left, top, width: crop.width!, height: crop.height! };
      return resizeImage(cur, w, h, { filter: c.filter, kernel: c.kernel, window });
    } else {
      cur = resizeImage(cur, w, h, { filter: c.filter, kernel: c.kernel });
    }
  }
  return crop ? centerCrop(cur, crop.width!, crop.height!) : cur;
}

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
  const c = common(config, opts);
  const size = sizeSpec(config.size ?? { shortest_edge: 224 }, false, 'size');
  const doCrop = config.do_center_crop !== false;
  const crop = doCrop ? sizeSpec(config.crop_size ?? 224, true, 'crop_size') : undefined;
  const out = resizeAndCrop(img, size, crop, c);
  const pixelValues = new Float32Array(3 * out.width * out.height);
  pixels(out, c, pixelValues, 0);
  return {
    pixelValues,
    shape: [1, 3, out.height, out.width],
    imageSize: [img.height, img.width],
    numTiles: 1,
  };
}

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
  if (!best) throw configError('image_grid_pinpoints is empty');
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
    throw configError('image_grid_pinpoints must be a non-empty list of [height, width] pairs');
  }
  return p as number[][];
}

/** The tile size of LLaVA-NeXT: `crop_size`, else `size` (height×width or shortest_edge squared). */
function llavaNextTile(config: ImageProcessorConfig): { base: [number, number]; patch: number } {
  const size = sizeSpec(config.size ?? { shortest_edge: 224 }, false, 'size')!;
  const crop = sizeSpec(config.crop_size, true, 'crop_size');
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
  const c = common(config, opts);
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

  const size = sizeSpec(config.size ?? { shortest_edge: 224 }, false, 'size');
  const crop =
    config.do_center_crop === false ? undefined : sizeSpec(config.crop_size ?? 224, true, 'crop_size');
  const done = tiles.map((t) => resizeAndCrop(t, size, crop, c));
  const { width: W, height: H } = done[0];
  if (done.some((t) => t.width !== W || t.height !== H)) {
    throw configError(
      `the grid tiles do not all come out ${H}×${W}; check crop_size against image_grid_pinpoints`,
    );
  }
  const plane = 3 * W * H;
  const pixelValues = new Float32Array(done.length * plane);
  for (let i = 0; i < done.length; i++) pixels(done[i], c, pixelValues, i * plane);
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
  const crop = sizeSpec(image.crop_size, true, 'crop_size');
  const size = sizeSpec(image.size ?? { shortest_edge: 224 }, false, 'size')!;
  const height = crop?.height ?? size.height ?? size.shortestEdge!;
  const width = crop?.width ?? size.width ?? size.shortestEdge!;
  const patchSize = Number(config.patch_size ?? image.patch_size ?? visionConfig.patch_size);
  if (!(patchSize > 0)) throw configError('no patch_size in the processor or vision config');
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

/**
 * The InternVL / GotOcr2 tiling grid [columns, rows]: among the grids of `minTiles`…`maxTiles`
 * tiles (by tile count), the one whose aspect ratio is closest to the image's; on a tie the
 * larger grid wins while the image's area exceeds half the grid's pixel area.
 */
export function optimalTiledCanvas(
  height: number,
  width: number,
  tileHeight: number,
  tileWidth: number,
  minTiles: number,
  maxTiles: number,
): [number, number] {
  const grids: [number, number][] = [];
  for (let w = 1; w <= maxTiles; w++) {
    for (let h = 1; h <= maxTiles; h++) if (w * h <= maxTiles && w * h >= minTiles) grids.push([w, h]);
  }
  grids.sort((a, b) => a[0] * a[1] - b[0] * b[1]); // stable, like Python's sorted
  const aspect = width / height;
  const area = width * height;
  let bestDiff = Number.POSITIVE_INFINITY;
  let best: [number, number] = [1, 1];
  for (const g of grids) {
    const diff = Math.abs(aspect - g[0] / g[1]);
    if (diff < bestDiff) {
      bestDiff = diff;
      best = g;
    } else if (diff === bestDiff && area > 0.5 * tileHeight * tileWidth * g[0] * g[1]) {
      best = g;
    }
  }
  return best;
}

/**
 * GotOcr2ImageProcessor as InternVL uses it (`crop_to_patches`): resize the image to the best
 * grid of `size` tiles (InternVL's dynamic preprocess), cut it row by row, and append a
 * thumbnail (the whole image at tile size) when there is more than one tile. Without
 * `crop_to_patches` the image is just resized to `size`. Returns `[tiles, 3, H, W]`.
 */
export function internvlProcess(
  img: RgbImage,
  config: ImageProcessorConfig,
  opts: ProcessOptions = {},
): ProcessorOutput {
  const c = common(config, opts);
  const size = sizeSpec(config.size ?? { height: 384, width: 384 }, true, 'size')!;
  if (!size.height || !size.width) throw configError('size must give height and width for InternVL tiles');
  const th = size.height;
  const tw = size.width;
  const minPatches = Number(config.min_patches ?? 1);
  const maxPatches = Number(config.max_patches ?? 12);
  const resize = (w: number, h: number) => resizeImage(img, w, h, { filter: c.filter, kernel: c.kernel });

  let tiles: RgbImage[];
  if (config.crop_to_patches === true && maxPatches > 1) {
    const [cols, rows] = optimalTiledCanvas(img.height, img.width, th, tw, minPatches, maxPatches);
    const grid = resize(tw * cols, th * rows);
    tiles = [];
    for (let i = 0; i < cols * rows; i++)
      tiles.push(cropImage(grid, (i % cols) * tw, Math.floor(i / cols) * th, tw, th));
    if (tiles.length !== 1) tiles.push(resize(tw, th));
  } else {
    tiles = [c.doResize ? resize(tw, th) : img];
  }
  const { width: W, height: H } = tiles[0];
  const plane = 3 * W * H;
  const pixelValues = new Float32Array(tiles.length * plane);
  for (let i = 0; i < tiles.length; i++) pixels(tiles[i], c, pixelValues, i * plane);
  return {
    pixelValues,
    shape: [tiles.length, 3, H, W],
    imageSize: [img.height, img.width],
    numTiles: tiles.length,
  };
}
