import { describe, expect, it } from 'vitest';
import { Checkpoint } from '../../loader/checkpoint.js';
import { llamaFamilyDecoder } from '../../models/llama-family.js';
import { fixture, fixtureTitle, maxAbsDiff } from '../../testing/fixtures.js';
import { CpuExecutor } from './cpu-executor.js';

const fx = fixture('llama3-tiny');

describe.skipIf(fx.missing)(fixtureTitle(fx, 'CpuExecutor'), () => {
  const open = async () => {
    const ckpt = Checkpoint.open(fx.dir);
    return CpuExecutor.create(ckpt, llamaFamilyDecoder(ckpt.textConfig), { numBlocks: 8, blockSize: 8 });
  };
  const prompt = Array.from({ length: 20 }, (_, i) => 10 + ((i * 7) % 50));
  const other = [...prompt.slice(0, 16), 3, 4, 5];

  it('reads a block another sequence of the same step writes, as if that step had come first', async () => {
    // Sequentially: A prefills blocks 0, 1, 2; then B, sharing A's first two blocks, runs its tail.
    const seq = await open();
    await seq.run([{ tokenIds: prompt, start: 0, blockTable: [0, 1, 2], sample: true }]);
    const want = await seq.run([
      { tokenIds: other.slice(16), start: 16, blockTable: [0, 1, 3], sample: true },
    ]);
    await seq.dispose();
    // In one step: B's cached positions 0..15 lie in blocks A computes in this very step.
    const same = await open();
    const both = await same.run([
      { tokenIds: prompt, start: 0, blockTable: [0, 1, 2], sample: true },
      { tokenIds: other.slice(16), start: 16, blockTable: [0, 1, 3], sample: true },
    ]);
    await same.dispose();
    const V = want.length;
    expect(maxAbsDiff(both.subarray(V, 2 * V), want)).toBeLessThan(1e-5);
  });
});
