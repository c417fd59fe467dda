import { crc32, deflateSync } from 'node:zlib';
import type { Rng } from '@switchyard/core';

const SIDE = 96;

/**
 * A seeded 96 × 96 PNG for the images workload: a background and two to four coloured squares
 * at seeded places, so distinct seeds give distinct pictures (and distinct image hashes).
 */
export function seededPicture(rng: Rng): Uint8Array {
  const byte = () => Math.floor(rng.next() * 256);
  const rgb = Buffer.alloc(SIDE * SIDE * 3);
  const fill = (x0: number, y0: number, size: number, c: number[]) => {
    for (let y = y0; y < Math.min(SIDE, y0 + size); y++)
      for (let x = x0; x < Math.min(SIDE, x0 + size); x++) rgb.set(c, (y * SIDE + x) * 3);
  };
  fill(0, 0, SIDE, [byte(), byte(), byte()]);
  const shapes = 2 + Math.floor(rng.next() * 3);
  for (let i = 0; i < shapes; i++) {
    fill(Math.floor(rng.next() * 72), Math.floor(rng.next() * 72), 16 + Math.floor(rng.next() * 16), [
      byte(),
      byte(),
      byte(),
    ]);
  }
  return encodePng(rgb, SIDE, SIDE);
}

/** An 8-bit RGB PNG (filter 0 on every row). */
export function encodePng(rgb: Buffer, width: number, height: number): Uint8Array {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) rgb.copy(raw, y * (width * 3 + 1) + 1, y * width * 3, (y + 1) * width * 3);
  const chunk = (type: string, data: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return new Uint8Array(
    Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      chunk('IDAT', deflateSync(raw)),
      chunk('IEND', Buffer.alloc(0)),
    ]),
  );
}
