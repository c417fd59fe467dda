import { deflateSync } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';
import { describe, expect, it } from 'vitest';
import { SwitchyardError } from '../errors.js';
import { DEFAULT_MAX_PIXELS, decodeImage, imageHash, MIN_IMAGE_SIDE } from './decode.js';

/** Raw RGB(A) pixels → an encoded image, via sharp. */
function encode(
  width: number,
  height: number,
  channels: 1 | 2 | 3 | 4,
  pixel: (x: number, y: number) => number[],
): Sharp {
  const raw = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw.set(pixel(x, y), (y * width + x) * channels);
  }
  return sharp(raw, { raw: { width, height, channels } });
}

const noise = (x: number, y: number) => [
  (x * 73 + y * 151) & 255,
  (x * 31 + y * 7) & 255,
  ((x ^ y) * 5) & 255,
];
const bytes = async (s: Sharp) => new Uint8Array(await s.toBuffer());
const rgbAt = (img: { width: number; data: Uint8Array }, x: number, y: number) =>
  Array.from(img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}

/**
 * A ~100-byte PNG whose IHDR declares `width`×`height` 8-bit grey: the IDAT holds only the
 * first row's zeros (whatever decoded it would need gigabytes, and fail late).
 */
function pngBomb(width: number, height: number): Uint8Array {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 0, 0, 0, 0], 8);
  const idat = deflateSync(Buffer.alloc(width + 1));
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return new Uint8Array(
    Buffer.concat([sig, chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', new Uint8Array())]),
  );
}

/** Runs `p`, expecting a SwitchyardError for the `image` parameter; returns its message. */
async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SwitchyardError);
  const e = err as SwitchyardError;
  expect(e.kind).toBe('invalid_request');
  expect(e.param).toBe('image');
  expect(e.message).toMatch(/^image: /);
  return e.message;
}

describe('decodeImage', () => {
  it('decodes PNG and JPEG to 8-bit RGB', async () => {
    const png = await decodeImage(await bytes(encode(40, 30, 3, noise).png()));
    expect([png.width, png.height, png.data.length]).toEqual([40, 30, 40 * 30 * 3]);
    expect(rgbAt(png, 7, 5)).toEqual(noise(7, 5));
    const jpeg = await decodeImage(
      await bytes(encode(40, 30, 3, () => [200, 100, 50]).jpeg({ quality: 95 })),
    );
    const [r, g, b] = rgbAt(jpeg, 20, 15);
    expect(Math.abs(r - 200) + Math.abs(g - 100) + Math.abs(b - 50)).toBeLessThanOrEqual(6);
  });

  it("drops alpha without compositing (PIL's convert('RGB') on RGBA)", async () => {
    const src = encode(16, 16, 4, (x) => [200, 10, 30, x < 8 ? 0 : 128]).png();
    const img = await decodeImage(await bytes(src));
    expect(rgbAt(img, 2, 2)).toEqual([200, 10, 30]); // fully transparent: the colour, not black or white
    expect(rgbAt(img, 12, 2)).toEqual([200, 10, 30]);
  });

  it('applies EXIF orientation 6 (rotate 90° clockwise), like ImageOps.exif_transpose', async () => {
    // Stored 40 wide × 20 high, left half red, right half blue.
    const src = encode(40, 20, 3, (x) => (x < 20 ? [255, 0, 0] : [0, 0, 255]))
      .jpeg({ quality: 95 })
      .withMetadata({ orientation: 6 });
    const img = await decodeImage(await bytes(src));
    expect([img.width, img.height]).toEqual([20, 40]);
    const [tr, , tb] = rgbAt(img, 10, 5); // the stored left edge is now the top
    const [br, , bb] = rgbAt(img, 10, 35);
    expect(tr).toBeGreaterThan(200);
    expect(tb).toBeLessThan(50);
    expect(br).toBeLessThan(50);
    expect(bb).toBeGreaterThan(200);
  });

  it('expands grey, grey + alpha and palette images to RGB, and 16-bit to 8-bit', async () => {
    const grey = await decodeImage(await bytes(encode(20, 20, 1, (x) => [x * 10]).png()));
    expect(rgbAt(grey, 7, 3)).toEqual([70, 70, 70]);
    const greyAlpha = await decodeImage(await bytes(encode(20, 20, 2, (x) => [x * 10, 0]).png()));
    expect(rgbAt(greyAlpha, 7, 3)).toEqual([70, 70, 70]);
    const palette = await decodeImage(
      await bytes(encode(20, 20, 3, (x) => (x < 10 ? [255, 0, 0] : [0, 128, 0])).png({ palette: true })),
    );
    expect([rgbAt(palette, 2, 2), rgbAt(palette, 15, 2)]).toEqual([
      [255, 0, 0],
      [0, 128, 0],
    ]);
    const deep = await decodeImage(await bytes(encode(20, 20, 3, noise).toColourspace('rgb16').png()));
    expect(rgbAt(deep, 11, 13)).toEqual(noise(11, 13));
  });

  it('converts CMYK the way Pillow does (plain ink arithmetic, no ICC profile)', async () => {
    // sRGB blue is stored as about C 238, M 195, Y 0, K 0; Pillow reads that back as
    // (255 - C, 255 - M, 255 - Y) scaled by (255 - K) / 255, not as the original blue.
    const cmyk = encode(20, 20, 3, () => [0, 0, 255])
      .toColourspace('cmyk')
      .jpeg({ quality: 95 });
    const [r, g, b] = rgbAt(await decodeImage(await bytes(cmyk)), 10, 10);
    expect(Math.abs(r - 17)).toBeLessThanOrEqual(3);
    expect(Math.abs(g - 60)).toBeLessThanOrEqual(3);
    expect(b).toBeGreaterThanOrEqual(252);
  });

  it('decodes AVIF and WebP', async () => {
    for (const s of [
      encode(20, 20, 3, () => [0, 0, 255]).avif(),
      encode(20, 20, 3, noise).webp({ lossless: true }),
    ]) {
      const img = await decodeImage(await bytes(s));
      expect([img.width, img.height]).toEqual([20, 20]);
    }
  });

  it('refuses empty input', async () => {
    expect(await refusal(decodeImage(new Uint8Array()))).toMatch(/empty \(0 bytes\).*PNG/);
  });

  it('refuses bytes that are not an image, and vector formats', async () => {
    const text = new TextEncoder().encode('hello, this is a text file and not a picture\n');
    expect(await refusal(decodeImage(text))).toMatch(
      /not an image in a supported format.*convert it to PNG or JPEG/,
    );
    const svg = new TextEncoder().encode(
      '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="red"/></svg>',
    );
    expect(await refusal(decodeImage(svg))).toMatch(
      /SVG \(vector\) images are not accepted; convert the image to PNG, JPEG/,
    );
  });

  it('refuses corrupt bytes', async () => {
    const png = Buffer.from(await bytes(encode(40, 30, 3, noise).png()));
    for (let i = 12; i < 40; i++) png[i] ^= 0x5a; // scramble the IHDR
    expect(await refusal(decodeImage(new Uint8Array(png)))).toMatch(/header could not be read.*corrupt/);
  });

  it('refuses a truncated PNG and a truncated JPEG', async () => {
    const png = await bytes(encode(64, 64, 3, noise).png());
    expect(await refusal(decodeImage(png.subarray(0, Math.floor(png.length * 0.6))))).toMatch(
      /PNG data is corrupt or truncated.*re-upload the complete file/,
    );
    const jpeg = await bytes(encode(64, 64, 3, noise).jpeg());
    expect(await refusal(decodeImage(jpeg.subarray(0, Math.floor(jpeg.length / 2))))).toMatch(
      /JPEG data is truncated/,
    );
  });

  it('refuses a decompression bomb from its header, before decoding', async () => {
    const bomb = pngBomb(40000, 40000);
    expect(bomb.length).toBeLessThan(1000);
    const msg = await refusal(decodeImage(bomb));
    expect(msg).toMatch(/40000×40000 \(1600 MP\), over the limit of 64 MP; downscale it/);
    expect(DEFAULT_MAX_PIXELS).toBe(64_000_000);
    // The limit is the caller's to set.
    const small = await bytes(encode(40, 30, 3, noise).png());
    expect(await refusal(decodeImage(small, { maxPixels: 1000 }))).toMatch(
      /40×30 \(1200 pixels\), over the limit of 1000 pixels/,
    );
  });

  it(`refuses images with a side under ${MIN_IMAGE_SIDE} px`, async () => {
    const one = await bytes(encode(1, 1, 3, () => [1, 2, 3]).png());
    expect(await refusal(decodeImage(one))).toMatch(
      /1×1 pixels, too small to process; each side must be at least 14 px/,
    );
    const thin = await bytes(encode(300, 13, 3, noise).png());
    expect(await refusal(decodeImage(thin))).toMatch(/300×13 pixels/);
    const ok = await decodeImage(await bytes(encode(14, 14, 3, noise).png()));
    expect(ok.width).toBe(14);
    expect((await decodeImage(one, { minSide: 1 })).data).toEqual(new Uint8Array([1, 2, 3]));
  });
});

describe('imageHash', () => {
  it('is the sha256 of the encoded bytes', () => {
    expect(imageHash(new TextEncoder().encode('abc'))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});
