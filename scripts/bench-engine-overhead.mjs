// The engine's own time per step (scheduling, batch packing, sampling, detokenizing, streaming
// bookkeeping) without a model: a backend registered here answers every greedy step at once with
// ids derived from the batch, so the wall time is the engine's. The GPU's per-step split
// (docs/benchmarks.md, "JS") is this cost beside a real executor.
//   node scripts/bench-engine-overhead.mjs [MODEL_DIR] [N=256] [IN=256] [OUT=128]
import { backendRegistry, createContainer } from '@switchyard/core';
import { createEngine, registerBuiltins } from '@switchyard/server/engine';

const [model = '../shared/fixtures/qwen2-tiny', n = '256', inp = '256', out = '128'] = process.argv.slice(2);
const [N, IN, OUT] = [n, inp, out].map(Number);

/** An executor with no model: next ids from the batch alone; the KV pool is bookkeeping only. */
const hostOnly = {
  name: 'host-only',
  dtypes: ['float32'],
  quantizations: ['none'],
  defaultBlockSize: 256,
  async createExecutor(_ckpt, model, options) {
    const vocab = model.decoder.vocabSize;
    const numBlocks = Math.floor((options.kvCacheTokens ?? 1 << 20) / options.blockSize);
    const ids = (batch) => {
      const rows = batch.filter((s) => s.sample).length;
      const out = new Int32Array(rows);
      let r = 0;
      for (const s of batch) if (s.sample) out[r++] = (s.tokenIds.at(-1) * 31 + s.start + 7) % vocab;
      return out;
    };
    return {
      device: 'host-only',
      vocabSize: vocab,
      kvBytesPerToken: 1,
      pool: { numBlocks, blockSize: options.blockSize },
      run: async (batch) => new Float32Array(batch.filter((s) => s.sample).length * vocab),
      runGreedy: async (batch) => ids(batch),
      dispose: async () => {},
    };
  },
};

const container = registerBuiltins(createContainer());
backendRegistry(container).register(hostOnly.name, hostOnly);
const engine = await createEngine({
  model,
  container,
  device: 'host-only',
  blockSize: 256,
  kvCacheTokens: N * (IN + OUT + 512),
  maxNumSeqs: N,
  maxNumBatchedTokens: 8192,
  maxModelLen: IN + OUT + 16,
  enablePrefixCaching: false,
});
const vocab = engine.info.vocabSize ?? 2000;
let seed = 1;
const rand = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed;
};
const prompts = Array.from({ length: N }, () =>
  Array.from({ length: IN }, () => 10 + (rand() % (vocab - 20))),
);
const req = (ids) => ({ promptIds: ids, sampling: { maxTokens: OUT, ignoreEos: true } });
await engine.generate(prompts.slice(0, 8).map(req)); // warm up
const steps0 = engine.metrics.numSteps;
const t = performance.now();
await engine.generate(prompts.map(req));
const wall = performance.now() - t;
const steps = engine.metrics.numSteps - steps0;
console.log(
  JSON.stringify({
    model,
    requests: N,
    in: IN,
    out: OUT,
    steps,
    wall_ms: wall,
    engine_ms_per_step: wall / steps,
  }),
);
await engine.close();
