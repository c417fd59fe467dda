import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DependencyContainer } from 'tsyringe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuBackend } from '../backends/cpu/cpu-backend.js';
import { CpuExecutor } from '../backends/cpu/cpu-executor.js';
import { modelRegistry } from '../container.js';
import { Engine } from '../engine/engine.js';
import { BatchingVisionRunner } from '../engine/vision-batcher.js';
import type { ChatMessage } from '../loader/chat-template.js';
import { Checkpoint } from '../loader/checkpoint.js';
import type { ModelSpec, ProcessedImage } from '../model.js';
import { type FixtureCase, fixture, fixtureTitle, maxAbsDiff } from './fixtures.js';
import { generateTogether } from './images-together.js';

type Item = { offset: number; length: number; embeddings: Float32Array };

/**
 * Checks a vision-language model package against a transformers fixture: expanded prompt ids,
 * and — fed transformers' own pixel values — first-step logits (≤ 1e-3) and 12 greedy ids; then
 * the whole path through our own image processing; then the vision tower's batching: all cases'
 * pixel values encoded in one batched run (within 1e-5 of each alone, and the same 12 greedy ids),
 * and all cases sent to the engine together (fewer tower runs than images, the ids of each alone).
 * `pixelShape` maps the fixture's pixel-values shape to the one the model's tower takes (e.g.
 * dropping a leading batch dim).
 */
export function vlmParity(
  name: string,
  makeContainer: () => DependencyContainer,
  { pixelShape = (shape: number[]) => shape }: { pixelShape?: (shape: number[]) => number[] } = {},
): void {
  const fx = fixture(name);
  describe.skipIf(fx.missing)(fixtureTitle(fx, `${name} matches transformers`), () => {
    const ref = fx.missing ? { chat: [] as FixtureCase[] } : fx.reference();
    let engine: Engine;
    let ckpt: Checkpoint;
    let spec: ModelSpec;
    beforeAll(async () => {
      engine = await Engine.create({ model: fx.dir, checkIntegrity: true }, makeContainer());
      ckpt = Checkpoint.open(fx.dir);
      spec = modelRegistry(makeContainer()).get(ckpt.architecture).describe(ckpt);
    });
    afterAll(() => engine?.close());

    const images = (c: FixtureCase) =>
      (c.images ?? []).map((f) => new Uint8Array(readFileSync(join(fx.dir, '..', 'images', f))));
    const request = (c: FixtureCase, maxTokens: number) => ({
      messages: c.messages as ChatMessage[],
      images: images(c),
      sampling: { maxTokens, ignoreEos: true },
    });

    it.each(ref.chat.map((c, i) => ({ i, c })))(
      "case $i: expanded prompt ids equal the processor's input_ids",
      async ({ c }) => {
        const [r] = await engine.generate([request(c, 1)]);
        expect(r.promptTokenIds).toEqual(c.input_ids);
      },
    );

    /** The image of case `c` as transformers' processor made it, and where its tokens go. */
    const referenceImage = (c: FixtureCase) => {
      const mm = spec.multimodal!;
      const ids = c.input_ids!;
      const pixels = fx.logits(c.pixel_values_file!);
      const size = (c.image_sizes?.[0] as [number, number] | undefined) ?? [0, 0];
      const length = ids.filter((t) => t === mm.placeholderTokenId).length;
      const image: ProcessedImage = {
        pixelValues: pixels,
        shape: pixelShape(c.pixel_values_shape!),
        imageSize: size,
        numTokens: length,
      };
      return { image, offset: ids.indexOf(mm.placeholderTokenId), length };
    };

    /** First-step logits within 1e-3 of transformers', then its greedy ids, with `items` in place. */
    const expectGreedyIds = async (c: FixtureCase, items: Item[]) => {
      const ids = c.input_ids!;
      const ex = await CpuExecutor.create(ckpt, spec.decoder, { numBlocks: 16, blockSize: 16 });
      try {
        const table = Array.from({ length: 16 }, (_, i) => i);
        let logits = await ex.run([{ tokenIds: ids, start: 0, blockTable: table, sample: true, mm: items }]);
        expect(maxAbsDiff(logits, fx.logits(c.logits0_file!))).toBeLessThan(1e-3);
        const out: number[] = [];
        for (let step = 0; step < c.generated_ids.length; step++) {
          let best = 0;
          for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
          out.push(best);
          logits = await ex.run([
            { tokenIds: [best], start: ids.length + step, blockTable: table, sample: true },
          ]);
        }
        expect(out).toEqual(c.generated_ids);
      } finally {
        await ex.dispose();
      }
    };

    it.each(ref.chat.map((c, i) => ({ i, c })))(
      "case $i: fed transformers' pixel values, logits within 1e-3 and 12 greedy ids exact",
      async ({ c }) => {
        const mm = spec.multimodal!;
        const items: Item[] = [];
        if (c.pixel_values_file) {
          const { image, offset, length } = referenceImage(c);
          const vision = await cpuBackend.createVisionRunner!(ckpt, mm.tower, { dtype: 'float32' });
          const out = await vision.encode(image.pixelValues, image.shape);
          items.push({ offset, length, embeddings: mm.arrange(out.data, out.shape, image) });
          await vision.dispose();
        }
        await expectGreedyIds(c, items);
      },
    );

    const withImages = ref.chat.filter((c) => c.pixel_values_file);
    it.skipIf(withImages.length < 2)(
      "all cases' pixel values encoded in one batched tower run: within 1e-5 of each alone, greedy ids exact",
      async () => {
        const mm = spec.multimodal!;
        const tower = await cpuBackend.createVisionRunner!(ckpt, mm.tower, { dtype: 'float32' });
        const batcher = new BatchingVisionRunner(tower, 64);
        try {
          const images = withImages.map(referenceImage);
          const solo = [];
          for (const { image } of images) solo.push(await tower.encode(image.pixelValues, image.shape));
          const batched = await Promise.all(
            images.map(({ image }) => batcher.encode(image.pixelValues, image.shape)),
          );
          expect(batcher.stats.runs).toBe(1);
          expect(batcher.stats.images).toBe(images.length);
          for (const [i, { image, offset, length }] of images.entries()) {
            expect(batched[i].shape).toEqual(solo[i].shape);
            expect(maxAbsDiff(batched[i].data, solo[i].data)).toBeLessThan(1e-5);
            const embeddings = mm.arrange(batched[i].data, batched[i].shape, image);
            await expectGreedyIds(withImages[i], [{ offset, length, embeddings }]);
          }
        } finally {
          await batcher.dispose();
        }
      },
    );

    it.skipIf(withImages.length < 2)(
      'all cases sent to the engine together: their images share tower runs, and each gets its ids alone',
      async () => {
        const alone = [];
        for (const c of withImages)
          alone.push((await engine.generate([request(c, c.generated_ids.length)]))[0]);
        const fresh = await Engine.create({ model: fx.dir, checkIntegrity: true }, makeContainer());
        try {
          const together = await generateTogether(
            fresh,
            withImages.map((c) => request(c, c.generated_ids.length)),
          );
          const stats = fresh.stats();
          expect(stats.visionImages).toBe(withImages.length);
          expect(stats.visionRuns).toBeLessThan(withImages.length);
          expect(stats.visionMaxBatchTiles).toBeGreaterThan(1);
          for (const [i, r] of together.entries()) {
            expect(r.promptTokenIds).toEqual(withImages[i].input_ids);
            expect(r.outputs[0].tokenIds).toEqual(alone[i].outputs[0].tokenIds);
          }
        } finally {
          await fresh.close();
        }
      },
    );

    it.each(ref.chat.map((c, i) => ({ i, c })))(
      'case $i: through our own preprocessing, greedy ids match where the margins allow',
      async ({ c }) => {
        const [r] = await engine.generate([request(c, c.generated_ids.length)]);
        // Our resampling differs from PIL's by a little; compare up to the first step whose margin is thin.
        const thin = c.margins.findIndex((m) => m < 0.05);
        const n = thin === -1 ? c.generated_ids.length : thin;
        expect(r.outputs[0].tokenIds.slice(0, n)).toEqual(c.generated_ids.slice(0, n));
      },
    );
  });
}
