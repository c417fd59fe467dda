import { SwitchyardError } from '../errors.js';
import {
  centerCrop,
  type ResampleFilter,
  type ResampleKernel,
  resizeImage,
  toPixelValues,
} from './resize.js';
import type { RgbImage } from './types.js';

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

/** A model_load error about the image processor's settings. */
export function processorConfigError(message: string): SwitchyardError {
  return new SwitchyardError(`image processor config: ${message}`, 'model_load');
}

/** A size as transformers' `get_size_dict` reads it. */
export interface SizeSpec {
  height?: number;
  width?: number;
  shortestEdge?: number;
  longestEdge?: number;
}

/** transformers' `get_size_dict`: an int, [h, w], or a dict of height/width/shortest_edge/longest_edge. */
export function readSizeSpec(value: unknown, defaultToSquare: boolean, name: string): SizeSpec | undefined {
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
  throw processorConfigError(`${name} ${JSON.stringify(value)} is not a size transformers understands`);
}

/** The rescale / normalize / resample settings every processor shares. */
export interface ProcessingSettings {
  doResize: boolean;
  doRescale: boolean;
  doNormalize: boolean;
  rescale: number;
  mean: number[];
  std: number[];
  filter: ResampleFilter;
  kernel: ResampleKernel;
}

/** Reads the shared settings; `defaults` are the family's mean and std when config.json has none. */
export function processingSettings(
  config: ImageProcessorConfig,
  opts: ProcessOptions,
  defaults: { mean: number[]; std: number[] },
): ProcessingSettings {
  const bool = (k: string, d: boolean) => (typeof config[k] === 'boolean' ? (config[k] as boolean) : d);
  const triple = (k: string, d: number[]) => {
    const v = config[k];
    if (typeof v === 'number') return [v, v, v];
    return Array.isArray(v) && v.length > 0 ? v.map(Number) : d;
  };
  const resample = config.resample ?? 3;
  if (resample !== 2 && resample !== 3) {
    throw processorConfigError(
      `resample ${JSON.stringify(resample)} is not supported (2 = bilinear and 3 = bicubic are)`,
    );
  }
  return {
    doResize: bool('do_resize', true),
    doRescale: bool('do_rescale', true),
    doNormalize: bool('do_normalize', true),
    rescale: typeof config.rescale_factor === 'number' ? config.rescale_factor : 1 / 255,
    mean: triple('image_mean', defaults.mean),
    std: triple('image_std', defaults.std),
    filter: resample === 2 ? 'bilinear' : 'bicubic',
    kernel: opts.kernel ?? 'torch',
  };
}

/** uint8 → float32 CHW, with whichever of rescale / normalize the config turns on. */
export function writePixelValues(
  img: RgbImage,
  c: ProcessingSettings,
  out: Float32Array,
  offset: number,
): void {
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

/** The [height, width] a size spec resizes an image to (shortest edge, bounded, or exact). */
export function resizeTarget(height: number, width: number, size: SizeSpec): [number, number] {
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

/** Resize (optionally straight into the centre-crop window), then centre crop. */
export function resizeAndCenterCrop(
  img: RgbImage,
  size: SizeSpec | undefined,
  crop: SizeSpec | undefined,
  c: ProcessingSettings,
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
