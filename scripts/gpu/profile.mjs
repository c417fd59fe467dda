// Where a bs1 decode step goes, and what each webgpu knob does to it (run on the GPU machine).
//   node scripts/gpu/profile.mjs MODEL_DIR OUT_DIR
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createEngine } from '@switchyard/server';

const [model, outDir] = process.argv.slice(2);
const prompt = JSON.parse(readFileSync(join(model, 'prompts.json'), 'utf8')).bs1;
const variants = [
  { name: 'fp16 default', webgpu: { validationMode: 'disabled' } },
  {
    name: 'fp16 without attention (timing aid)',
    webgpu: { validationMode: 'disabled', skipAttention: true },
  },
  { name: 'int4', webgpu: { linear: 'int4', validationMode: 'disabled' } },
  {
    name: 'int4 without attention (timing aid)',
    webgpu: { linear: 'int4', validationMode: 'disabled', skipAttention: true },
  },
];
const results = [];
for (const v of variants) {
  const t0 = performance.now();
  const engine = await createEngine({
    model,
    device: 'webgpu',
    maxModelLen: 1024,
    kvCacheTokens: 8192,
    webgpu: v.webgpu,
  });
  const load = performance.now() - t0;
  await engine.generate([{ promptIds: prompt, sampling: { maxTokens: 8, ignoreEos: true } }]);
  const steps = 64;
  const s = performance.now();
  const before = engine.metrics.numSteps;
  await engine.generate([{ promptIds: prompt, sampling: { maxTokens: steps, ignoreEos: true } }]);
  const ms = (performance.now() - s) / (engine.metrics.numSteps - before);
  const r = { variant: v.name, load_ms: load, ms_per_step: ms, tok_s: 1000 / ms };
  results.push(r);
  console.log(JSON.stringify(r));
  await engine.close();
}
