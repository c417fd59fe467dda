import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { register as registerPaged } from '@switchyard/attention-paged';
import {
  BatchingVisionRunner,
  cpuBackend,
  createContainer,
  Engine,
  type GenerateRequest,
} from '@switchyard/core';
import { generateTogether, maxAbsDiff, repoRoot } from '@switchyard/core/testing';
import { register as registerContinuous } from '@switchyard/scheduler-continuous';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register } from './index.js';

/** The vision tower's batching on the embedded demo model, whose answers transformers gave. */
const DEMO = join(repoRoot(), 'models', 'switchyard-demo-vision');
const ref: { chat: { image: string; messages: GenerateRequest['messages']; generated_ids: number[] }[] } =
  JSON.parse(readFileSync(join(DEMO, 'demo_reference.json'), 'utf8'));
const requests = (): GenerateRequest[] =>
  ref.chat.map((c) => ({
    messages: c.messages,
    images: [new Uint8Array(readFileSync(join(DEMO, c.image)))],
    sampling: { maxTokens: 24 },
  }));
const container = () => {
  const c = createContainer();
  for (const r of [register, registerContinuous, registerPaged]) r(c);
  return c;
};

describe('vision tower batching on the demo model', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.create({ model: DEMO, checkIntegrity: true, blockSize: 8 }, container());
  });
  afterAll(() => engine.close());

  it('8 requests with distinct pictures at once: fewer tower runs than pictures, transformers’ ids', async () => {
    const results = await generateTogether(engine, requests());
    for (const [i, r] of results.entries()) expect(r.outputs[0].tokenIds).toEqual(ref.chat[i].generated_ids);
    const s = engine.stats();
    expect(s.visionImages).toBe(8);
    expect(s.visionTiles).toBe(8);
    expect(s.visionRuns).toBeLessThan(8);
    expect(s.visionMaxBatchTiles).toBeGreaterThan(1);
    expect(engine.vision?.stats.runs).toBe(s.visionRuns);
  });

  it('the same picture in 4 requests at once is encoded once', async () => {
    const before = engine.stats();
    const [one] = requests();
    const results = await generateTogether(engine, [one, one, one, one]);
    const after = engine.stats();
    // The picture is cached already from the test above: no tower run at all.
    expect(after.visionRuns - before.visionRuns).toBe(0);
    for (const r of results) expect(r.outputs[0].tokenIds).toEqual(ref.chat[0].generated_ids);
    const fresh = await Engine.create({ model: DEMO, blockSize: 8 }, container());
    try {
      await generateTogether(fresh, [one, one, one, one]);
      expect(fresh.stats()).toMatchObject({ visionRuns: 1, visionImages: 1, imageCacheQueries: 4 });
    } finally {
      await fresh.close();
    }
  });

  it('with visionBatchSize 16 the pictures’ embeddings equal each encoded alone within 1e-5', async () => {
    const mm = engine.spec.multimodal!;
    const processed = await engine.imagePipeline!.process(
      ref.chat.map((c) => new Uint8Array(readFileSync(join(DEMO, c.image)))),
    );
    const tower = await cpuBackend.createVisionRunner!(engine.checkpoint, mm.tower, { dtype: 'float32' });
    const batcher = new BatchingVisionRunner(tower, 16);
    try {
      const solo = [];
      for (const p of processed) solo.push(await tower.encode(p.pixelValues, p.shape));
      const batched = await Promise.all(processed.map((p) => batcher.encode(p.pixelValues, p.shape)));
      expect(batcher.stats).toMatchObject({ runs: 1, images: 8, tiles: 8 });
      for (const [i, b] of batched.entries()) {
        expect(b.shape).toEqual(solo[i].shape);
        expect(maxAbsDiff(b.data, solo[i].data)).toBeLessThan(1e-5);
      }
    } finally {
      await batcher.dispose();
    }
  });

  it('visionBatchSize 0 encodes each picture in a run of its own, with the same answers', async () => {
    const off = await Engine.create({ model: DEMO, blockSize: 8, visionBatchSize: 0 }, container());
    try {
      const results = await generateTogether(off, requests());
      for (const [i, r] of results.entries())
        expect(r.outputs[0].tokenIds).toEqual(ref.chat[i].generated_ids);
      expect(off.stats()).toMatchObject({ visionRuns: 8, visionImages: 8, visionMaxBatchTiles: 1 });
    } finally {
      await off.close();
    }
  });

  it('refuses a negative visionBatchSize, naming the option', async () => {
    await expect(Engine.create({ model: DEMO, visionBatchSize: -2 }, container())).rejects.toThrow(
      /visionBatchSize must be an integer ≥ 0/,
    );
  });
});
