// The CUDA tower beside a KV pool of a given size (GPU machine; decision 0008's addenda): the tower
// on the CUDA provider, the decoder's pool of KV_TOKENS, then three tower runs, a text request and
// a picture request, each printed as it ends. On the H200 (ORT 1.29) a pool of 20M llava-tiny
// tokens (5.1 GB) ran and one of 100M (25.6 GB) crashed the tower's first run (SIGSEGV).
//   node scripts/gpu/cuda-tower-pool.mjs FIXTURE_DIR IMAGE KV_TOKENS
import { readFileSync } from 'node:fs';
import { createEngine } from '@switchyard/server/engine';

const [model, image, kv] = process.argv.slice(2);
const log = (m) => process.stderr.write(`${m}\n`);
const engine = await createEngine({
  model,
  device: 'cuda',
  kvCacheTokens: Number(kv),
  executorIsolation: 'none',
  settings: { visionTower: 'cuda' },
});
log(`engine up: ${engine.info.kvCacheTokens} KV tokens`);
const [h, w] = engine.spec.multimodal.tower.imageSize;
for (let i = 0; i < 3; i++) {
  await engine.vision.encode(new Float32Array(2 * 3 * h * w), [2, 3, h, w]);
  log('tower run ok');
}
const text = await engine.generate([{ promptIds: [1, 2, 3, 4, 5], sampling: { maxTokens: 4 } }]);
log(`text ok: ${text[0].outputs[0].tokenIds}`);
const picture = await engine.generate([
  {
    messages: [
      { role: 'user', content: [{ type: 'text', text: 'What is in the picture?' }, { type: 'image' }] },
    ],
    images: [new Uint8Array(readFileSync(image))],
    sampling: { maxTokens: 8 },
  },
]);
log(`picture ok: ${picture[0].outputs[0].tokenIds}`);
await engine.close();
log('closed');
