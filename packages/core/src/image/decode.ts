import { createHash } from 'node:crypto';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { invalidParam, type SwitchyardError } from '../errors.js';
import type { RgbImage } from './types.js';

/** Default cap on width × height, read from the header before any pixel is decoded: 64 MP. */
export const DEFAULT_MAX_PIXELS = 64_000_000;

/**
 * The smallest side accepted, in pixels: one patch of the usual ViT-L/14 and InternViT towers.
 * Anything smaller is upsampled 20–40× into a blur that carries nothing the model can read (in
 * practice tracking pixels, spacers and broken thumbnails), and transformers' own NumPy path
 * cannot even tell the layout of an image 1 or 3 pixels high (it takes that axis for channels).
 */
export const MIN_IMAGE_SIDE = 14;

/** Raster formats accepted, by sharp's format name. SVG/PDF (vector, rendered) are refused. */
const FORMATS: Record<string, string> = {
  jpeg: 'JPEG',
  png: 'PNG',
  webp: 'WebP',
  gif: 'GIF',
  tiff: 'TIFF',
  heif: 'AVIF',
};
const ACCEPTED = 'PNG, JPEG, WebP, GIF, TIFF or AVIF';

export interface DecodeOptions {
  /** Refuse images whose header declares more pixels than this (default 64 MP). */
  maxPixels?: number;
  /** Refuse images with a side shorter than this (default {@link MIN_IMAGE_SIDE}). */
  minSide?: number;
}

const bad = (message: string): SwitchyardError => invalidParam('image', message);

function detail(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ').trim().replace(/[:.]$/, '');
}

function megapixels(n: number): string {
  return n >= 100_000 ? `${Number((n / 1e6).toFixed(1))} MP` : `${n} pixels`;
}

/**
 * Decodes an image the way transformers' `load_image` sees it: EXIF orientation applied
 * (`ImageOps.exif_transpose`), then `convert('RGB')` — alpha dropped without compositing,
 * palette and grayscale expanded, 16-bit reduced to 8-bit. Embedded ICC profiles are ignored,
 * as Pillow ignores them. The header is checked first: the format must be a raster one, width ×
 * height at most `maxPixels` (decompression bombs never reach the decoder) and each side at
 * least `minSide`. Truncated or corrupt pixel data is an error, not a grey tail.
 *
 * Every refusal is a `SwitchyardError` (`invalid_request`, param `image`).
 */
export async function decodeImage(bytes: Uint8Array, opts: DecodeOptions = {}): Promise<RgbImage> {
  const { name, cmyk } = await readImageHeader(bytes, opts);
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const input = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let raw: { data: Buffer; info: OutputInfo };
  try {
    let pipeline = sharp(input, {
      failOn: 'error', // truncated or corrupt pixel data aborts; benign warnings (extra bytes) do not
      limitInputPixels: maxPixels,
      autoOrient: true,
      ignoreIcc: true,
      pages: 1,
    });
    pipeline = cmyk
      ? pipeline.pipelineColourspace('cmyk').toColourspace('cmyk')
      : pipeline.removeAlpha().toColourspace('srgb');
    raw = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    const msg = detail(e);
    const what = /premature end|truncat|unexpected end|not enough/i.test(msg)
      ? 'truncated'
      : 'corrupt or truncated';
    throw bad(`the ${name} data is ${what} (${msg}); re-upload the complete file or re-export it`);
  }
  const { info } = raw;
  const pixels = info.width * info.height;
  const data =
    cmyk && info.channels >= 4
      ? cmykToRgb(raw.data, pixels, info.channels)
      : toRgb(raw.data, pixels, info.channels);
  return { width: info.width, height: info.height, data };
}

/** What an image's header says, read without decoding a pixel. */
export interface ImageHeader {
  /** The format's name ('PNG', 'JPEG', ...). */
  name: string;
  width: number;
  height: number;
  cmyk: boolean;
}

/**
 * Reads and checks an image's header only (format, size against `maxPixels` and `minSide`): cheap,
 * whatever the image's size, so a request's images can be budgeted before any is decoded.
 */
export async function readImageHeader(bytes: Uint8Array, opts: DecodeOptions = {}): Promise<ImageHeader> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const minSide = opts.minSide ?? MIN_IMAGE_SIDE;
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) {
    throw bad(`the image is empty (0 bytes); send the bytes of a ${ACCEPTED} file`);
  }
  const input = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let meta: Metadata;
  try {
    // Header only: no pixel is decoded here, so no limit is needed yet.
    meta = await sharp(input, { limitInputPixels: false }).metadata();
  } catch (e) {
    const msg = detail(e);
    if (/unsupported image format/i.test(msg)) {
      throw bad(`the data is not an image in a supported format (${ACCEPTED}); convert it to PNG or JPEG`);
    }
    throw bad(
      `the image header could not be read (${msg}); the file is corrupt — re-export it as PNG or JPEG`,
    );
  }

  const name = FORMATS[meta.format];
  if (!name || (meta.format === 'heif' && meta.compression !== 'av1')) {
    const what =
      meta.format === 'svg' || meta.format === 'pdf'
        ? `${meta.format.toUpperCase()} (vector)`
        : meta.format === 'heif'
          ? 'HEIC'
          : meta.format.toUpperCase();
    throw bad(`${what} images are not accepted; convert the image to ${ACCEPTED}`);
  }
  const { width, height } = meta;
  if (!(width > 0 && height > 0)) {
    throw bad(`the ${name} header declares no size (${width}×${height}); the file is corrupt — re-export it`);
  }
  if (width * height > maxPixels) {
    throw bad(
      `the ${name} is ${width}×${height} (${megapixels(width * height)}), over the limit of ${megapixels(maxPixels)}; ` +
        'downscale it before sending',
    );
  }
  if (Math.min(width, height) < minSide) {
    throw bad(
      `the ${name} is ${width}×${height} pixels, too small to process; each side must be at least ${minSide} px`,
    );
  }

  // CMYK: the decoder takes the ink values as they are and converts them the way Pillow's
  // convert('RGB') does (no colour management); libvips would go through an ICC profile.
  return { name, width, height, cmyk: meta.space === 'cmyk' };
}

/** Pillow's `cmyk2rgb`: each channel is (255 - ink) scaled by (255 - K), with its rounding. */
function cmykToRgb(src: Buffer, pixels: number, channels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  const mulDiv255 = (a: number, b: number) => {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (let i = 0; i < pixels; i++) {
    const p = i * channels;
    const nk = 255 - src[p + 3];
    for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.max(0, Math.min(255, nk - mulDiv255(src[p + c], nk)));
  }
  return out;
}

/** Whatever band count libvips hands back, as RGB: gray is replicated, a trailing alpha dropped. */
function toRgb(src: Buffer, pixels: number, channels: number): Uint8Array {
  // sharp's output buffer is the image's own: a view, not a second copy of it.
  if (channels === 3) return new Uint8Array(src.buffer, src.byteOffset, pixels * 3);
  const out = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    if (channels <= 2) {
      const v = src[i * channels];
      out[i * 3] = v;
      out[i * 3 + 1] = v;
      out[i * 3 + 2] = v;
    } else {
      out[i * 3] = src[i * channels];
      out[i * 3 + 1] = src[i * channels + 1];
      out[i * 3 + 2] = src[i * channels + 2];
    }
  }
  return out;
}

/** sha256 (hex) of the encoded bytes: the key of the image-embedding cache. */
export function imageHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
