import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { register as registerPaged } from '@switchyard/attention-paged';
import { createContainer, Engine, type GenerateRequest } from '@switchyard/core';
import { repoRoot } from '@switchyard/core/testing';
import { register as registerContinuous } from '@switchyard/scheduler-continuous';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register } from './index.js';

/** Engine behaviour with images, on the embedded vision demo model (always in the repo). */
const DEMO = join(repoRoot(), 'models', 'switchyard-demo-vision');
const picture = (i: number) => new Uint8Array(readFileSync(join(DEMO, 'examples', `scene${i}.png`)));
/** A picture no other test has sent (new bytes, new hash): scene `i` mirrored. */
const fresh = async (i: number) => new Uint8Array(await sharp(picture(i)).flop().png().toBuffer());
const ask = (text: string, image?: Uint8Array, maxTokens = 24): GenerateRequest => ({
  messages: [{ role: 'user', content: image ? [{ type: 'image' }, { type: 'text', text }] : text }],
  images: image ? [image] : [],
  sampling: { maxTokens },
});

/** A PNG whose header claims `w`×`h` pixels (a decompression bomb needs no more than that to be refused). */
function pngHeaderOnly(w: number, h: number): Uint8Array {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return new Uint8Array(
    Buffer.concat([
      sig,
      chunk('IHDR', ihdr),
      chunk('IDAT', Buffer.alloc(16)),
      chunk('IEND', Buffer.alloc(0)),
    ]),
  );
}

describe('the engine with images', () => {
  let engine: Engine;
  beforeAll(async () => {
    const c = createContainer();
    for (const r of [register, registerContinuous, registerPaged]) r(c);
    engine = await Engine.create({ model: DEMO, checkIntegrity: true, blockSize: 8 }, c);
  });
  afterAll(() => engine.close());

  it('answers the demo pictures as transformers does', async () => {
    const ref = JSON.parse(readFileSync(join(DEMO, 'demo_reference.json'), 'utf8'));
    const results = await engine.generate(
      ref.chat.map((c: { image: string; messages: GenerateRequest['messages'] }) => ({
        messages: c.messages,
        images: [new Uint8Array(readFileSync(join(DEMO, c.image)))],
        sampling: { maxTokens: 24 },
      })),
    );
    results.forEach((r, i) => {
      expect(r.outputs[0].tokenIds).toEqual(ref.chat[i].generated_ids);
    });
  });

  it('runs the vision encoder once for the same picture twice', async () => {
    const misses = engine.imageCache.misses;
    const hits = engine.imageCache.hits;
    const image = await fresh(7);
    const [a] = await engine.generate([ask('What color is the circle?', image)]);
    const [b] = await engine.generate([ask('What color is the circle?', image)]);
    expect(engine.imageCache.misses - misses).toBe(1);
    expect(engine.imageCache.hits - hits).toBe(1);
    expect(b.outputs[0].tokenIds).toEqual(a.outputs[0].tokenIds);
  });

  it('shares no KV beyond the text before the image between two pictures with the same text', async () => {
    const [one, two] = [await fresh(3), await fresh(5)];
    const [first] = await engine.generate([ask('Which shape is orange?', one)]);
    const [second] = await engine.generate([ask('Which shape is orange?', two)]);
    const imageAt = second.promptTokenIds.indexOf(engine.spec.multimodal!.placeholderTokenId);
    expect(second.usage.cachedTokens).toBeLessThanOrEqual(imageAt);
    expect(first.usage.cachedTokens).toBeLessThanOrEqual(imageAt);
    // The same picture again does reuse the image's KV.
    const [again] = await engine.generate([ask('Which shape is orange?', two)]);
    expect(again.usage.cachedTokens).toBeGreaterThan(imageAt + 32);
    expect(again.outputs[0].tokenIds).toEqual(second.outputs[0].tokenIds);
  });

  it('gives an image request and text requests in one batch their solo ids', async () => {
    const requests = [
      ask('Which shape is black?', picture(6)),
      ask('Hello there', undefined, 8),
      ask('How many shapes are there?', picture(2)),
    ];
    const solo = [];
    for (const r of requests) solo.push((await engine.generate([r]))[0].outputs[0].tokenIds);
    engine.kv.reset();
    const together = await engine.generate(requests);
    together.forEach((r, i) => {
      expect(r.outputs[0].tokenIds).toEqual(solo[i]);
    });
  });

  const png = picture(0);
  it.each([
    ['empty bytes', new Uint8Array(0), /empty/],
    [
      'corrupt bytes',
      new Uint8Array(Buffer.from('this is not an image at all, just text')),
      /not an image|supported format/,
    ],
    ['a truncated PNG', png.subarray(0, Math.floor(png.length / 2)), /truncated|corrupt/],
    ['a 1×1 image', pngOf1x1(), /too small|at least/],
    ['a 40000×40000 decompression bomb', pngHeaderOnly(40000, 40000), /40000×40000.*limit/],
    [
      'an unsupported format',
      new Uint8Array(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>')),
      /SVG|format|not an image/,
    ],
  ])('refuses %s with a clear error while other requests run', async (_what, bytes, message) => {
    const other = engine.generate([ask('Which shape is orange?', picture(5), 12)]);
    await expect(engine.generate([ask('What is this?', bytes)])).rejects.toThrow(message);
    const [ok] = await other;
    expect(ok.outputs[0].tokenIds.length).toBeGreaterThan(0);
    expect(engine.numUnfinished()).toBe(0);
  });

  it('refuses more images than the prompt has places for', async () => {
    const req = ask('What is this?', picture(1));
    req.images = [picture(1), picture(2)];
    await expect(engine.generate([req])).rejects.toThrow(/places for 1/);
  });
});

function pngOf1x1(): Uint8Array {
  return new Uint8Array(
    Buffer.from(
      'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
      'base64',
    ),
  );
}

describe('several images in one prompt', () => {
  it('expands each placeholder and answers', async () => {
    const c = createContainer();
    for (const r of [register, registerContinuous, registerPaged]) r(c);
    const engine = await Engine.create({ model: DEMO }, c);
    try {
      const [r] = await engine.generate([
        {
          messages: [
            {
              role: 'user',
              content: [{ type: 'image' }, { type: 'image' }, { type: 'text', text: 'Describe the image.' }],
            },
          ],
          images: [picture(1), picture(2)],
          sampling: { maxTokens: 8 },
        },
      ]);
      const token = engine.spec.multimodal!.placeholderTokenId;
      expect(r.promptTokenIds.filter((t) => t === token)).toHaveLength(128);
      expect(engine.imageCache.misses).toBe(2);
      expect(r.outputs[0].tokenIds.length).toBeGreaterThan(0);
    } finally {
      await engine.close();
    }
  });
});
