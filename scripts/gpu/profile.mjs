// Where a bs1 decode step goes, and what each webgpu knob does to it (run on the GPU machine).
//   node scripts/gpu/profile.mjs MODEL_DIR
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createEngine } from '@switchyard/server';

const [model] = process.argv.slice(2);
const prompt = JSON.parse(readFileSync(join(model, 'prompts.json'), 'utf8')).bs1;
// The knobs of docs/decisions/0006, one at a time against the defaults.
const variants = [
  { name: 'default (matmul, fused projections and norms, metadata, validation off)' },
  { name: 'unfused projections and norms', webgpu: { fuseProjections: false, fuseNorms: false } },
  { name: 'gemm', webgpu: { linear: 'gemm' } },
  { name: 'no attention_metadata', webgpu: { attentionMetadata: false } },
  { name: 'validation basic', webgpu: { validationMode: 'basic' } },
  { name: 'int4', webgpu: { linear: 'int4' } },
];
const results = [];
for (const v of variants) {
  const t0 = performance.now();
  const engine = await createEngine({
    model,
    device: 'webgpu',
    maxModelLen: 1024,
    kvCacheTokens: 8192,
    settings: v.webgpu,
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
