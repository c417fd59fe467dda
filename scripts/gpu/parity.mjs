// fp16 parity of the webgpu path against the transformers fixtures (run on the GPU machine).
//   node scripts/gpu/parity.mjs FIXTURES_DIR [EXTRA_FIXTURES_DIR] > parity.json
// EXTRA_FIXTURES_DIR may hold mistral-tiny (sliding_window 8): the sliding window through
// PagedAttention's local_window_size, with Mistral registered here as docs/examples does it.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Checkpoint,
  createContainer,
  llamaFamilyDecoder,
  modelRegistry,
  WebGpuExecutor,
} from '@switchyard/core';
import { registerBuiltins } from '@switchyard/server';
import { executorCase } from './parity-case.mjs';
import { vlmParity } from './vlm-parity.mjs';

const root = process.argv[2];
const extra = process.argv[3];
const container = registerBuiltins(createContainer());
modelRegistry(container).register('MistralForCausalLM', {
  architectures: ['MistralForCausalLM'],
  describe: (ckpt) => ({
    architecture: ckpt.architecture,
    decoder: llamaFamilyDecoder(ckpt.textConfig, {
      slidingWindow: ckpt.textConfig.sliding_window ?? undefined,
    }),
  }),
});
const fixtures = ['qwen2-tiny', 'llama3-tiny', 'qwen3-tiny'].map((name) => [name, join(root, name)]);
if (extra && existsSync(join(extra, 'mistral-tiny')))
  fixtures.push(['mistral-tiny', join(extra, 'mistral-tiny')]);
const results = [];
for (const [name, dir] of fixtures) {
  const ckpt = Checkpoint.open(dir);
  const spec = modelRegistry(container).get(ckpt.architecture).describe(ckpt);
  const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8'));
  const ex = await WebGpuExecutor.create(ckpt, spec.decoder, {
    numBlocks: 64,
    blockSize: 16,
    maxModelLen: 1024,
  });
  const table = Array.from({ length: 16 }, (_, i) => i);
  for (const [i, c] of ref.chat.entries()) {
    // Each case gets its own blocks, so cases never read each other's KV.
    const blocks = table.map((x) => (x + i * 16 < 64 ? x + (i % 4) * 16 : x));
    results.push({ fixture: name, case: i, ...(await executorCase(ex, dir, c, blocks)) });
  }
  await ex.dispose();
}
console.log(JSON.stringify({ parity: results }, null, 1));

// Vision-language models on webgpu (vision tower and decoder on the GPU).
const { createEngine } = await import('@switchyard/server');
const vlm = await vlmParity(root, { device: 'webgpu' });
const demo = join(process.cwd(), 'models', 'switchyard-demo-vision');
const demoRef = JSON.parse(readFileSync(join(demo, 'demo_reference.json'), 'utf8'));
let demoVision;
try {
  const engine = await createEngine({ model: demo, device: 'webgpu', maxModelLen: 512, kvCacheTokens: 8192 });
  const answers = await engine.generate(
    demoRef.chat.map((c) => ({
      messages: c.messages,
      images: [new Uint8Array(readFileSync(join(demo, c.image)))],
      sampling: { maxTokens: 24 },
    })),
  );
  const exact = answers.filter(
    (a, i) => JSON.stringify(a.outputs[0].tokenIds) === JSON.stringify(demoRef.chat[i].generated_ids),
  ).length;
  await engine.close();
  demoVision = `${exact}/${demoRef.chat.length}`;
} catch (e) {
  // The demo's head dimension (36) is one PagedAttention refuses: say so instead of failing the run.
  demoVision = `refused: ${e.message}`;
}
console.log(JSON.stringify({ vlm, demo_vision_exact: demoVision }, null, 1));
