// Our engine on the cuda executor, on a real-shape checkpoint made by hf_peer.py (GPU machine),
// with the same prompts the peer sends. Prints one JSON line 'RESULT {...}'.
//   node scripts/gpu/cuda-bench.mjs MODEL_DIR [bs1|batch|all|sweep] [N IN OUT]
// sweep: decode ms per step at batch sizes 1…64 (SWEEP="1,2,4"), 128-token prompts → 64 tokens each.
// env: DTYPE=bfloat16, QUANT=int4, GRAPH=0 (no CUDA graphs), META=0 (no attention_metadata), BLOCK (default 256),
//      KV (pool tokens), BUDGET (max batched tokens, 8192), LINEAR=gemm,
//      INT4_MAX=N|all (with QUANT=int4: decode batches up to N run int4, the rest fp16; default 4)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCudaEngine } from './cuda-engine.mjs';

const [model, mode = 'all', n = '256', inp = '256', out = '128'] = process.argv.slice(2);
const prompts = JSON.parse(readFileSync(join(model, 'prompts.json'), 'utf8'));
const N = Number(n);
const IN = Number(inp);
const OUT = Number(out);
const t0 = performance.now();
const blockSize = Number(process.env.BLOCK ?? 256);
const engine = await createCudaEngine(
  {
    model,
    maxModelLen: 1024,
    blockSize,
    kvCacheTokens: Number(process.env.KV ?? Math.max(16384, N * (IN + OUT + 2 * blockSize))),
    maxNumSeqs: N,
    maxNumBatchedTokens: Number(process.env.BUDGET ?? 8192),
    enablePrefixCaching: false,
    quantization: process.env.QUANT === 'int4' ? 'int4' : 'none',
    dtype: process.env.DTYPE ?? 'float16',
  },
  {
    cudaGraph: process.env.GRAPH !== '0',
    attentionMetadata: process.env.META !== '0',
    ...(process.env.LINEAR ? { linear: process.env.LINEAR } : {}),
    ...(process.env.ARGMAX ? { argmaxChunks: Number(process.env.ARGMAX) } : {}),
    ...(process.env.INT4_MAX
      ? { int4MaxBatch: process.env.INT4_MAX === 'all' ? 'all' : Number(process.env.INT4_MAX) }
      : {}),
  },
);
const ex = engine.executor;
const r = {
  model,
  engine: 'switchyard cuda',
  quantization: process.env.QUANT ?? 'none',
  int4_max_batch: process.env.QUANT === 'int4' ? (process.env.INT4_MAX ?? 'default (4)') : undefined,
  dtype: process.env.DTYPE ?? 'float16',
  cuda_graph: process.env.GRAPH !== '0',
  attention_metadata: process.env.META !== '0',
  linear: process.env.LINEAR ?? 'matmul',
  argmax_chunks: Number(process.env.ARGMAX ?? 128),
  block_size: blockSize,
  load_s: (performance.now() - t0) / 1000,
  kv_tokens: engine.info.kvCacheTokens,
};
const req = (ids, k) => ({ promptIds: ids, sampling: { maxTokens: k, ignoreEos: true } });
/** One measured generate, with the per-step split from the executor's counters. */
const measure = async (requests) => {
  // On a worker thread or in a process (EXECUTOR_THREAD=1, EXECUTOR_ISOLATION) the executor's counters stay there: steps from the engine.
  if (!ex.timing) {
    const steps0 = engine.metrics.numSteps;
    const s = performance.now();
    const res = await engine.generate(requests);
    const wall = performance.now() - s;
    const steps = engine.metrics.numSteps - steps0;
    return {
      res,
      wall,
      steps,
      split: { steps, executor_isolation: process.env.EXECUTOR_ISOLATION ?? 'thread' },
    };
  }
  const before = { ...ex.timing, graph: ex.graphSteps, int4: ex.int4Steps };
  const s = performance.now();
  const res = await engine.generate(requests);
  const wall = performance.now() - s;
  const d = (k) => ex.timing[k] - before[k];
  const steps = d('steps');
  return {
    res,
    wall,
    steps,
    split: {
      steps,
      graph_steps: ex.graphSteps - before.graph,
      int4_steps: ex.int4Steps - before.int4,
      ort_run_ms_per_step: d('runMs') / steps,
      copy_in_ms_per_step: d('uploadMs') / steps,
      copy_out_ms_per_step: d('downloadMs') / steps,
      js_ms_per_step: (wall - d('runMs') - d('uploadMs') - d('downloadMs')) / steps,
    },
  };
};
// Each phase says when it starts and ends (stderr), so a run that dies shows where.
const phase = (what) =>
  process.stderr.write(`PHASE ${what} ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
phase('loaded');
await engine.generate([req(prompts.bs1, 8)]);
phase('warm-up done');
if (mode === 'bs1' || mode === 'all') {
  await engine.generate([req(prompts.bs1, 32)]);
  const m = await measure([req(prompts.bs1, 256)]);
  const ttft = m.res[0].metrics.ttftMs;
  r.bs1_decode_tok_s = 256 / (m.wall / 1000);
  r.bs1_decode_only_tok_s = 255 / ((m.wall - ttft) / 1000);
  r.bs1_ms_per_step = m.wall / m.steps;
  r.bs1_split = m.split;
  phase(`bs1 done: ${r.bs1_decode_tok_s.toFixed(1)} tok/s`);
}
if (mode === 'batch' || mode === 'all') {
  const ps = prompts.batch.slice(0, N).map((p) => p.slice(0, IN));
  await engine.generate(ps.slice(0, 8).map((p) => req(p, 4)));
  phase('batch warm-up done (8 prompts)');
  const m = await measure(ps.map((p) => req(p, OUT)));
  const done = m.res.reduce((a, x) => a + x.usage.completionTokens, 0);
  Object.assign(r, {
    batch_requests: N,
    batch_in: IN,
    batch_out: OUT,
    batch_seconds: m.wall / 1000,
    batch_output_tok_s: done / (m.wall / 1000),
    batch_total_tok_s: (done + N * IN) / (m.wall / 1000),
    batch_split: m.split,
  });
}
if (mode === 'sweep') {
  const sizes = (process.env.SWEEP ?? '1,2,4,8,16,32,64').split(',').map(Number);
  r.sweep = [];
  for (const b of sizes) {
    const ps = prompts.batch.slice(0, b).map((p) => p.slice(0, 128));
    await engine.generate(ps.map((p) => req(p, 8)));
    const m = await measure(ps.map((p) => req(p, 64)));
    const ttft = Math.max(...m.res.map((x) => x.metrics.ttftMs));
    const decodeMs = (m.wall - ttft) / 63;
    r.sweep.push({
      batch: b,
      decode_ms_per_step: decodeMs,
      decode_tok_s: (b * 1000) / decodeMs,
      split: m.split,
    });
    phase(`sweep ${b}: ${decodeMs.toFixed(2)} ms/step`);
  }
}
console.log(`RESULT ${JSON.stringify(r)}`);
await engine.close();
