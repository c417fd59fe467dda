import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint, ThreadedExecutor } from '@switchyard/core';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL } from './cli.js';
import { builtinsModule, createEngine } from './create-engine.js';
import { startCli } from './http/hostile-helpers.js';

const ref = JSON.parse(readFileSync(join(DEMO_MODEL, 'demo_reference.json'), 'utf8'));

describe('the executor on a thread of its own (executorThread)', () => {
  it("gives transformers' ids for the demo model, like the executor on this thread", async () => {
    const engine = await createEngine({ model: DEMO_MODEL, executorThread: {} });
    try {
      const results = await engine.generate(
        ref.chat.map((c: { messages: unknown[]; generated_ids: number[] }) => ({
          messages: c.messages,
          sampling: { maxTokens: c.generated_ids.length },
        })),
      );
      results.forEach((r, i) => {
        expect(r.outputs[0].tokenIds).toEqual(ref.chat[i].generated_ids);
      });
    } finally {
      await engine.close();
    }
  });

  describe('a step that fails on the thread', () => {
    let ex: ThreadedExecutor;
    afterAll(() => ex?.dispose());
    it("rejects with the backend's message, and the next step runs", async () => {
      ex = await ThreadedExecutor.create({
        model: Checkpoint.open(DEMO_MODEL).dir,
        modules: [builtinsModule()],
        device: 'cpu',
        options: {
          blockSize: 16,
          kvCacheTokens: 64,
          maxModelLen: 64,
          dtype: 'float32',
          quantization: 'none',
        },
      });
      expect(ex.pool).toEqual({ numBlocks: 4, blockSize: 16 });
      await expect(ex.run([{ tokenIds: [1, 2, 3], start: 0, blockTable: [], sample: true }])).rejects.toThrow(
        /./,
      );
      const logits = await ex.run([{ tokenIds: [1, 2, 3], start: 0, blockTable: [0], sample: true }]);
      expect(logits.length).toBe(ex.vocabSize);
    });
  });

  it('refuses to start without the modules that register the model family, saying so', async () => {
    await expect(
      ThreadedExecutor.create({
        model: Checkpoint.open(DEMO_MODEL).dir,
        modules: [],
        device: 'cpu',
        options: { blockSize: 16, maxModelLen: 64, dtype: 'float32', quantization: 'none' },
      }),
    ).rejects.toThrow(/unknown model architecture 'LlamaForCausalLM'/);
  });

  it('serves with --executor-thread: the demo answers as transformers does', async () => {
    const cli = await startCli(['--model', DEMO_MODEL, '--executor-thread', '--no-log-requests']);
    try {
      const c = ref.chat[0];
      const r = await fetch(`${cli.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: c.messages, max_tokens: c.generated_ids.length, temperature: 0 }),
      });
      expect(r.status).toBe(200);
      const body = (await r.json()) as { choices: { message: { content: string } }[] };
      expect(body.choices[0].message.content.trim()).toBe(c.generated_text.trim());
    } finally {
      cli.kill('SIGTERM');
      await cli.exited;
    }
  }, 60_000);
});
