import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DependencyContainer } from 'tsyringe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuExecutor } from '../backends/cpu/cpu-executor.js';
import { modelRegistry } from '../container.js';
import { Engine } from '../engine/engine.js';
import type { ChatMessage } from '../loader/chat-template.js';
import { Checkpoint } from '../loader/checkpoint.js';
import { readSafetensorsHeader, readTensorF32 } from '../loader/safetensors.js';
import { fixture, fixtureTitle, maxAbsDiff } from './fixtures.js';

/**
 * Checks a text model package against a fixture that transformers produced: tokenization, chat
 * rendering, first-step logits (≤ 1e-3), 12 greedy ids alone and batched, and a bf16 copy.
 * `makeContainer` returns a container with the model package, one scheduler and one KV manager
 * registered under the names 'continuous' and 'paged'. `root` is the folder holding the fixture
 * (default: the shared fixtures).
 */
export function textModelParity(
  name: string,
  makeContainer: () => DependencyContainer,
  { root }: { root?: string } = {},
): void {
  const fx = fixture(name, root);
  describe.skipIf(fx.missing)(fixtureTitle(fx, `${name} matches transformers`), () => {
    const ref = fx.missing ? { chat: [], completion: [], tokenize: [] } : fx.reference();
    let engine: Engine;
    beforeAll(async () => {
      engine = await Engine.create({ model: fx.dir, checkIntegrity: true }, makeContainer());
    });
    afterAll(() => engine?.close());

    it.each(ref.tokenize ?? [])('tokenizes $text exactly', (c) => {
      const tok = engine.tokenizer;
      expect(tok.encode(c.text, false)).toEqual(c.ids);
      expect(tok.encode(c.text, true)).toEqual(c.ids_with_special);
      expect(tok.decode(c.ids_with_special, true)).toBe(c.decoded);
    });

    it.each(ref.chat.map((c, i) => ({ i, c })))(
      'chat case $i: template, prompt ids, logits and greedy ids',
      async ({ c }) => {
        const rendered = engine.checkpoint.chatTemplate!.render(c.messages as ChatMessage[]);
        expect(rendered).toBe(c.prompt_text);
        const [result] = await engine.generate([
          {
            messages: c.messages as ChatMessage[],
            sampling: { maxTokens: c.generated_ids.length, ignoreEos: true },
          },
        ]);
        expect(result.promptTokenIds).toEqual(c.prompt_ids);
        expect(result.outputs[0].tokenIds).toEqual(c.generated_ids);
      },
    );

    it.each((ref.completion ?? []).map((c, i) => ({ i, c })))(
      'completion case $i: prompt ids and greedy ids',
      async ({ c }) => {
        const [result] = await engine.generate([
          { prompt: c.prompt, sampling: { maxTokens: c.generated_ids.length, ignoreEos: true } },
        ]);
        expect(result.promptTokenIds).toEqual(c.prompt_ids);
        expect(result.outputs[0].tokenIds).toEqual(c.generated_ids);
      },
    );

    it('first-step logits are within 1e-3 of transformers', async () => {
      const ckpt = Checkpoint.open(fx.dir);
      const spec = modelRegistry(makeContainer()).get(ckpt.architecture).describe(ckpt);
      const ex = await CpuExecutor.create(ckpt, spec.decoder, { numBlocks: 16, blockSize: 16 });
      try {
        for (const c of ref.chat) {
          const ids = c.prompt_ids!;
          const logits = await ex.run([
            { tokenIds: ids, start: 0, blockTable: [0, 1, 2, 3, 4, 5, 6, 7], sample: true },
          ]);
          expect(maxAbsDiff(logits, fx.logits(c.logits0_file!))).toBeLessThan(1e-3);
        }
      } finally {
        await ex.dispose();
      }
    });

    it('gives every prompt its solo greedy ids when all run in one batch', async () => {
      const cases = [
        ...ref.chat.map((c) => ({ promptIds: c.prompt_ids!, ids: c.generated_ids })),
        ...(ref.completion ?? []).map((c) => ({ promptIds: c.prompt_ids!, ids: c.generated_ids })),
      ];
      const results = await engine.generate(
        cases.map((c, i) => ({
          promptIds: c.promptIds,
          sampling: { maxTokens: c.ids.length - (i % 3), ignoreEos: true },
        })),
      );
      results.forEach((r, i) => {
        expect(r.outputs[0].tokenIds).toEqual(cases[i].ids.slice(0, cases[i].ids.length - (i % 3)));
      });
      expect(engine.kv.usage().numUsedBlocks).toBe(0);
    });

    it('a bf16 copy of the weights gives the same greedy ids', async () => {
      const dir = mkdtempSync(join(tmpdir(), `switchyard-${name}-bf16-`));
      try {
        writeBf16Copy(fx.dir, dir);
        const bf16 = await Engine.create({ model: dir }, makeContainer());
        try {
          // bf16 rounding moves logits by ~1e-2; compare where transformers' margins are clearly
          // larger, on the chat case whose leading steps are surest.
          const sureSteps = (margins: number[]) => {
            const thin = margins.findIndex((m) => m < 0.05);
            return thin === -1 ? margins.length : thin;
          };
          const c = ref.chat.reduce((a, b) => (sureSteps(b.margins) > sureSteps(a.margins) ? b : a));
          const [r] = await bf16.generate([
            { promptIds: c.prompt_ids!, sampling: { maxTokens: c.generated_ids.length, ignoreEos: true } },
          ]);
          const n = sureSteps(c.margins);
          expect(r.outputs[0].tokenIds.slice(0, n)).toEqual(c.generated_ids.slice(0, n));
          expect(n).toBeGreaterThan(0);
        } finally {
          await bf16.close();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

/** Copies a checkpoint folder, rewriting model.safetensors in bf16 (round to nearest even). */
export function writeBf16Copy(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const f of readdirSync(from)) if (f !== 'model.safetensors') copyFileSync(join(from, f), join(to, f));
  const entries = readSafetensorsHeader(join(from, 'model.safetensors'));
  const header: Record<string, unknown> = {};
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const f32 = readTensorF32(e);
    const u32 = new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
    const out = new Uint16Array(f32.length);
    for (let i = 0; i < u32.length; i++) out[i] = (u32[i] + 0x7fff + ((u32[i] >>> 16) & 1)) >>> 16;
    const bytes = new Uint8Array(out.buffer);
    header[e.name] = { dtype: 'BF16', shape: e.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(join(to, 'model.safetensors'), Buffer.concat([len, Buffer.from(json), ...chunks]));
}
