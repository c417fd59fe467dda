// Where a cuda step's time goes, per op type, from ORT's profiler (GPU machine). Run without CUDA
// graphs and with CUDA_LAUNCH_BLOCKING=1, so each node's time is its kernels' time.
//   CUDA_LAUNCH_BLOCKING=1 node scripts/gpu/cuda-profile.mjs MODEL_DIR [batch] > profile.json
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCudaEngine } from './cuda-engine.mjs';

const [model, batch = '256'] = process.argv.slice(2);
const B = Number(batch);
const prompts = JSON.parse(readFileSync(join(model, 'prompts.json'), 'utf8'));
mkdirSync('/tmp/prof', { recursive: true });
const engine = await createCudaEngine(
  {
    model,
    maxModelLen: 1024,
    kvCacheTokens: B * 640,
    maxNumSeqs: B,
    maxNumBatchedTokens: 8192,
    enablePrefixCaching: false,
  },
  { cudaGraph: false, profilePrefix: '/tmp/prof/p' },
);
const ex = engine.executor;
const req = (ids, k) => ({ promptIds: ids, sampling: { maxTokens: k, ignoreEos: true } });
const phases = {};
const phase = async (name, requests) => {
  const from = ex.timing.steps;
  await engine.generate(requests);
  phases[name] = [from, ex.timing.steps];
};
await phase('warmup', [req(prompts.bs1, 4)]);
await phase('bs1', [req(prompts.bs1, 24)]);
await phase(
  'batch',
  prompts.batch.slice(0, B).map((p) => req(p.slice(0, 256), 12)),
);
const file = ex.endProfiling();
const events = JSON.parse(readFileSync(file, 'utf8'));
const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
/** Per op type: µs per run over runs [from, to) of a phase (the last `last` of them). */
const summarize = (from, to, last) => {
  const sel = runs.slice(Math.max(from, to - last), to);
  const by = {};
  let total = 0;
  for (const r of sel) {
    for (const n of nodes) {
      if (n.ts < r.ts || n.ts > r.ts + r.dur) continue;
      const op = n.args?.op_name ?? '?';
      by[op] ??= { us: 0, count: 0 };
      by[op].us += n.dur / sel.length;
      by[op].count += 1 / sel.length;
      total += n.dur / sel.length;
    }
  }
  const runUs = sel.reduce((a, r) => a + r.dur, 0) / sel.length;
  return {
    runs: sel.length,
    model_run_us: runUs,
    node_us: total,
    ops: Object.fromEntries(Object.entries(by).sort((a, b) => b[1].us - a[1].us)),
  };
};
const out = {
  model,
  profile: file,
  bs1_decode: summarize(...phases.bs1, 16),
  batch_decode: summarize(...phases.batch, 6),
  batch_prefill_first: summarize(phases.batch[0], phases.batch[0] + 1, 1),
};
console.log(JSON.stringify(out, null, 1));
for (const k of ['bs1_decode', 'batch_decode']) {
  const s = out[k];
  console.error(`${k}: run ${s.model_run_us.toFixed(0)} us, nodes ${s.node_us.toFixed(0)} us`);
  for (const [op, v] of Object.entries(s.ops).slice(0, 8))
    console.error(`  ${op}: ${v.us.toFixed(0)} us (${v.count.toFixed(0)} nodes)`);
}
await engine.close();
