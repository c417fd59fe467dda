#!/usr/bin/env node
// Vision tower batching on the CPU (--vision-batch-size). Prints one JSON object:
//  - tower: ms per image of the tower alone, each image in its own run (as with batching off:
//    `concurrent`) against runs of B images, for each model given;
//  - engine: for each --vision-batch-size, repeated and interleaved (medians): 8 requests one at a
//    time (lone_ttft: what batching costs a request alone), then the images workload (N requests,
//    N distinct pictures, all at once).
//   npm run build && node scripts/bench-vision-batch.mjs [--reps 5] [--requests 16] [--sizes 0,4,16,32]
//     [--models models/switchyard-demo-vision,../shared/fixtures/internvl-tiny]
// One engine cell is what `switchyard bench --model M --workload images --num-requests 16
// --num-images 16 --input-len 16 --output-len 16 --vision-batch-size S --json` runs.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Checkpoint, cpuBackend, createContainer, modelRegistry } from '../packages/core/dist/index.js';
import { benchReport, makeWorkload, runWorkload } from '../packages/server/dist/bench.js';
import { createEngine, registerBuiltins } from '../packages/server/dist/create-engine.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'models/switchyard-demo-vision' },
    'engine-model': { type: 'string', default: 'models/switchyard-demo-vision' },
    reps: { type: 'string', default: '5' },
    requests: { type: 'string', default: '16' },
    sizes: { type: 'string', default: '0,4,16,32' },
    'tower-images': { type: 'string', default: '128' },
    'skip-tower': { type: 'boolean', default: false },
  },
});
const reps = Number(values.reps);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const load = () => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);

async function towerBench(dir) {
  const ckpt = Checkpoint.open(dir);
  const tower = modelRegistry(registerBuiltins(createContainer())).get(ckpt.architecture).describe(ckpt)
    .multimodal.tower;
  const runner = await cpuBackend.createVisionRunner(ckpt, tower, { dtype: 'float32' });
  const [h, w] = tower.imageSize;
  const row = tower.numChannels * h * w;
  const n = Number(values['tower-images']);
  const pixels = Float32Array.from({ length: n * row }, (_, i) => Math.sin(i * 0.37));
  const rows = (at, b) => pixels.subarray(at * row, (at + b) * row);
  const shape = (b) => [b, tower.numChannels, h, w];
  const cells = { concurrent: [] };
  const cpu = { concurrent: [] };
  const batches = [1, 2, 4, 8, 16, 32, 64].filter((b) => b <= n);
  for (const b of batches) {
    cells[`batch${b}`] = [];
    cpu[`batch${b}`] = [];
  }
  /** Wall and CPU (all threads of this process) ms per image of `work` over `count` images. */
  const time = async (key, count, work) => {
    const t = performance.now();
    const c = process.cpuUsage();
    await work();
    const used = process.cpuUsage(c);
    cells[key].push((performance.now() - t) / count);
    cpu[key].push((used.user + used.system) / 1000 / count);
  };
  await runner.encode(rows(0, 1), shape(1)); // warm-up
  for (let r = 0; r < reps; r++) {
    await time('concurrent', n, () =>
      Promise.all(Array.from({ length: n }, (_, i) => runner.encode(rows(i, 1), shape(1)))),
    );
    for (const b of batches) {
      await time(`batch${b}`, Math.floor(n / b) * b, async () => {
        for (let i = 0; i + b <= n; i += b) await runner.encode(rows(i, b), shape(b));
      });
    }
  }
  await runner.dispose();
  return {
    model: dir,
    image: `${tower.numChannels}x${h}x${w}`,
    tokens_per_image: tower.tokensPerImage,
    wall_ms_per_image: Object.fromEntries(Object.entries(cells).map(([k, v]) => [k, +median(v).toFixed(3)])),
    cpu_ms_per_image: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, +median(v).toFixed(3)])),
  };
}

async function engineCell(size) {
  const engine = await createEngine({ model: values['engine-model'], visionBatchSize: size });
  try {
    const numRequests = Number(values.requests);
    const options = {
      workload: 'images',
      numRequests,
      numImages: numRequests,
      inputLen: 16,
      outputLen: 16,
      rangeRatio: 0,
      sharedPrefixLen: 0,
      numPrefixes: 1,
      requestRate: Number.POSITIVE_INFINITY,
      seed: 0,
      vocabSize: engine.info.vocabSize,
      imageTokenId: engine.spec.multimodal.placeholderTokenId,
    };
    const w = { ...makeWorkload(options), options };
    // One request at a time first (distinct pictures, so each is encoded): the batcher's cost when alone.
    const alone = makeWorkload({ ...w.options, seed: 1, numRequests: 8, numImages: 8 });
    const loneTtft = [];
    for (const req of alone.requests) loneTtft.push((await engine.generate([req]))[0].metrics.ttftMs);
    const runsBefore = engine.stats().visionRuns;
    const loadBefore = load();
    const c = process.cpuUsage();
    const { results, durationS } = await runWorkload(engine, w);
    const used = process.cpuUsage(c);
    const r = benchReport(results, durationS);
    const s = engine.stats();
    return {
      duration_s: r.duration_s,
      output_tok_s: r.output_tok_s,
      lone_ttft_p50_ms: median(loneTtft),
      ttft_p50_ms: r.ttft_ms.p50,
      ttft_p99_ms: r.ttft_ms.p99,
      cpu_s: (used.user + used.system) / 1e6,
      vision_runs: s.visionRuns - runsBefore,
      vision_max_batch_tiles: s.visionMaxBatchTiles,
      load: loadBefore,
    };
  } finally {
    await engine.close();
  }
}

const out = {
  machine: `${(await import('node:os')).cpus()[0].model}, ${(await import('node:os')).cpus().length} cores`,
  load_at_start: load(),
};
if (!values['skip-tower']) {
  out.tower = [];
  for (const dir of values.models.split(',')) out.tower.push(await towerBench(dir));
}
const sizes = values.sizes.split(',').map(Number);
const runs = Object.fromEntries(sizes.map((s) => [s, []]));
for (let r = 0; r < reps; r++) for (const s of sizes) runs[s].push(await engineCell(s));
out.engine = {
  workload: `${values.requests} requests at once, ${values.requests} distinct 96x96 pictures, 16 prompt + 16 output tokens, ${values['engine-model']}`,
  by_vision_batch_size: Object.fromEntries(
    sizes.map((s) => [
      s,
      Object.fromEntries(
        [
          'duration_s',
          'cpu_s',
          'output_tok_s',
          'lone_ttft_p50_ms',
          'ttft_p50_ms',
          'ttft_p99_ms',
          'vision_runs',
          'vision_max_batch_tiles',
          'load',
        ].map((k) => [k, +median(runs[s].map((x) => x[k])).toFixed(3)]),
      ),
    ]),
  ),
  raw: runs,
};
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
