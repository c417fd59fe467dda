import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint, CpuExecutor, createContainer } from '@switchyard/core';
import {
  fixture,
  fixturesRoot,
  fixtureTitle,
  maxAbsDiff,
  repoRoot,
  textModelParity,
} from '@switchyard/core/testing';
import { describe, expect, it } from 'vitest';
import { mistral, register as registerMistral } from '../../../docs/examples/mistral-model.js';
import { registerBuiltins } from './create-engine.js';

/**
 * The Mistral fixture (transformers' outputs, sliding_window 8, prompts longer than that) lives with
 * the example, in docs/examples/fixtures (made by scripts/make_fixtures.py); $SWITCHYARD_MISTRAL_FIXTURES
 * or a mistral-tiny in the shared fixtures take precedence.
 */
const root =
  process.env.SWITCHYARD_MISTRAL_FIXTURES ??
  (existsSync(join(fixturesRoot(), 'mistral-tiny'))
    ? fixturesRoot()
    : join(repoRoot(), 'docs', 'examples', 'fixtures'));

const container = () => {
  const c = registerBuiltins(createContainer());
  registerMistral(c);
  return c;
};

// The whole text-model parity suite, for a family registered from outside the packages.
textModelParity('mistral-tiny', container, { root });

const fx = fixture('mistral-tiny', root);
describe.skipIf(fx.missing)(fixtureTitle(fx, 'Mistral from docs/examples: the sliding window'), () => {
  it('reads sliding_window from config.json, and the window is what makes the logits match', async () => {
    const ckpt = Checkpoint.open(fx.dir);
    const spec = mistral.describe(ckpt);
    expect(spec.decoder.slidingWindow).toBe(8);
    const c = fx.reference().chat[0];
    expect(c.prompt_ids!.length).toBeGreaterThan(8);
    const want = fx.logits(c.logits0_file!);
    const run = async (decoder: typeof spec.decoder) => {
      const ex = await CpuExecutor.create(ckpt, decoder, { numBlocks: 8, blockSize: 16 });
      try {
        const table = [0, 1, 2, 3, 4, 5, 6, 7];
        return await ex.run([{ tokenIds: c.prompt_ids!, start: 0, blockTable: table, sample: true }]);
      } finally {
        await ex.dispose();
      }
    };
    expect(maxAbsDiff(await run(spec.decoder), want)).toBeLessThan(1e-3);
    // Full causal attention over the same weights is measurably off: the window is really applied.
    expect(maxAbsDiff(await run({ ...spec.decoder, slidingWindow: undefined }), want)).toBeGreaterThan(1e-2);
  });

  it('explains a bad sliding_window', () => {
    const ckpt = Checkpoint.open(fx.dir);
    const bad = Object.create(ckpt, { textConfig: { value: { ...ckpt.textConfig, sliding_window: 0 } } });
    expect(() => mistral.describe(bad)).toThrow(/sliding_window must be a positive integer or null, got 0/);
  });
});
