// Step-by-step check of a VLM on cuda (GPU machine): decoder executor, then the tower's session.
//   node scripts/gpu/cuda-diag-vision.mjs FIXTURE_DIR
import { Checkpoint, createContainer, modelRegistry } from '@switchyard/core';
import { registerBuiltins } from '@switchyard/server';
import { CapiVisionRunner } from '../../packages/core/dist/backends/cuda/capi-vision-runner.js';
import { openCudaProvider } from '../../packages/core/dist/backends/cuda/cuda-provider.js';
import { CudaExecutor } from '../../packages/core/dist/backends/cuda/index.js';

const log = (m) => process.stderr.write(`${m}\n`);
const dir = process.argv[2];
const ckpt = Checkpoint.open(dir);
const spec = modelRegistry(registerBuiltins(createContainer())).get(ckpt.architecture).describe(ckpt);
const tower = spec.multimodal.tower;
if (process.env.SKIP_EXECUTOR !== '1') {
  log('executor: creating');
  const ex = await CudaExecutor.create(ckpt, spec.decoder, {
    blockSize: 256,
    kvCacheTokens: 4096,
    maxModelLen: 512,
    quantization: 'none',
  });
  log('executor: ok');
  if (process.env.CLOSE_FIRST === '1') {
    await ex.dispose();
    log('executor: disposed');
  }
}
log('provider: opening');
const p = openCudaProvider({ logLevel: Number(process.env.LOG ?? 3) });
const optimization = process.env.OPT ?? 'basic';
log('provider: ok');
const runner = CapiVisionRunner.open(p.ort, ckpt, tower, {
  appendProvider:
    process.env.CPU_TOWER === '1'
      ? undefined
      : (so) => p.ort.appendProvider(so, p.device, { arena_extend_strategy: 'kSameAsRequested' }),
  onDispose: p.close,
  optimization,
});
log('tower session: ok');
const [h, w] = tower.imageSize;
const out = await runner.encode(new Float32Array(2 * 3 * h * w).fill(0.5), [2, 3, h, w]);
log(`encode (${optimization}): ok ${out.shape} ${out.data[0]}`);
await runner.dispose();
log('disposed');
