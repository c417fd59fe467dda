// Our engine on a real-shape checkpoint made by hf_peer.py (run on the GPU machine), with the same
// prompts the peer sends. Prints one JSON line.
//   node scripts/gpu/bench.mjs MODEL_DIR [bs1|batch|all] [N IN OUT]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createEngine } from '@switchyard/server';

const [model, mode = 'all', n = '256', inp = '256', out = '128'] = process.argv.slice(2);
const prompts = JSON.parse(readFileSync(join(model, 'prompts.json'), 'utf8'));
const N = Number(n);
const IN = Number(inp);
const OUT = Number(out);
const t0 = performance.now();
const engine = await createEngine({
  model,
  device: 'webgpu',
  maxModelLen: 1024,
  kvCacheTokens: Math.max(16384, N * (IN + OUT + 16)),
  maxNumSeqs: N,
  maxNumBatchedTokens: Number(process.env.BUDGET ?? 8192),
  enablePrefixCaching: false,
  quantization: process.env.QUANT === 'int4' ? 'int4' : 'none',
  settings: process.env.VALIDATION ? { validationMode: process.env.VALIDATION } : undefined,
});
const loadS = (performance.now() - t0) / 1000;
const ex = engine.executor;
let runMs = 0;
let steps = 0;
for (const m of ['run', 'runGreedy']) {
  const f = ex[m].bind(ex);
  ex[m] = async (b) => {
    const s = performance.now();
    const r = await f(b);
    runMs += performance.now() - s;
    steps++;
    return r;
  };
}
const req = (ids, k) => ({ promptIds: ids, sampling: { maxTokens: k, ignoreEos: true } });
const r = {
  model,
  quantization: process.env.QUANT ?? 'none',
  load_s: loadS,
  kv_tokens: engine.info.kvCacheTokens,
};
const measure = async (requests) => {
  runMs = 0;
  steps = 0;
  const s = performance.now();
  const res = await engine.generate(requests);
  const wall = performance.now() - s;
  return { wall, res, runMs, steps };
};
await engine.generate([req(prompts.bs1, 8)]);
if (mode === 'bs1' || mode === 'all') {
  const m = await measure([req(prompts.bs1, 256)]);
  const ttft = m.res[0].metrics.ttftMs;
  r.bs1_decode_tok_s = 256 / (m.wall / 1000);
  r.bs1_decode_only_tok_s = 255 / ((m.wall - ttft) / 1000);
  r.bs1_ms_per_step = m.wall / m.steps;
  r.bs1_ort_ms_per_step = m.runMs / m.steps;
  r.bs1_js_ms_per_step = (m.wall - m.runMs) / m.steps;
}
if (mode === 'batch' || mode === 'all') {
  const ps = prompts.batch.slice(0, N).map((p) => p.slice(0, IN));
  await engine.generate(ps.slice(0, 8).map((p) => req(p, 4)));
  const m = await measure(ps.map((p) => req(p, OUT)));
  const done = m.res.reduce((a, x) => a + x.usage.completionTokens, 0);
  Object.assign(r, {
    batch_requests: N,
    batch_in: IN,
    batch_out: OUT,
    batch_seconds: m.wall / 1000,
    batch_output_tok_s: done / (m.wall / 1000),
    batch_total_tok_s: (done + N * IN) / (m.wall / 1000),
    batch_steps: m.steps,
    batch_ort_ms: m.runMs,
    batch_js_ms: m.wall - m.runMs,
  });
}
console.log(`RESULT ${JSON.stringify(r)}`);
await engine.close();
