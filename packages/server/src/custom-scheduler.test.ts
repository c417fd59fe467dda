import { createContainer, type GenerateResult } from '@switchyard/core';
import { describe, expect, it } from 'vitest';
import { register as registerPrefillFirst } from '../../../docs/examples/prefill-first-scheduler.js';
import { DEMO_MODEL } from './cli.js';
import { createEngine, registerBuiltins } from './create-engine.js';

const PROMPTS = [
  'Which module defines quote?',
  'What does json.dumps do?',
  'Which module defines deque?',
  'What is paged attention?',
];

describe('a custom scheduler registered from outside the packages (docs/examples)', () => {
  it.each(['paged', 'radix'])('gives every prompt its solo ids with the %s KV cache', async (attention) => {
    const solo = await createEngine({ model: DEMO_MODEL });
    const expected: GenerateResult[] = [];
    for (const p of PROMPTS)
      expected.push(
        (await solo.generate([{ messages: [{ role: 'user', content: p }], sampling: { maxTokens: 24 } }]))[0],
      );
    await solo.close();

    const container = registerBuiltins(createContainer());
    registerPrefillFirst(container);
    const engine = await createEngine({
      model: DEMO_MODEL,
      scheduler: 'prefill-first',
      attention,
      container,
      checkIntegrity: true,
    });
    try {
      expect(engine.info.scheduler).toBe('prefill-first');
      const results = await engine.generate(
        PROMPTS.map((p) => ({ messages: [{ role: 'user', content: p }], sampling: { maxTokens: 24 } })),
      );
      results.forEach((r, i) => {
        expect(r.outputs[0].tokenIds).toEqual(expected[i].outputs[0].tokenIds);
      });
      expect(engine.kv.usage().numUsedBlocks).toBe(0);
    } finally {
      await engine.close();
    }
  });
});
