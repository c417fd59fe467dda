// Finds the first node of a VLM's vision tower whose run crashes the CUDA provider (GPU machine).
//   node scripts/gpu/cuda-bisect-tower.mjs FIXTURE_DIR [OPT=all|basic|disabled]  > bisect.json
// The tower graph is cut after node k (its output made the graph's output) and run in a child
// process in a session like the cuda backend's tower session (CapiVisionRunner); a binary search over
// the float-valued cut points finds the first k that crashes. Prints the node, its op and inputs.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Checkpoint, createContainer, modelRegistry } from '@switchyard/core';
import { registerBuiltins } from '@switchyard/server';
import { openCudaProvider } from '../../packages/core/dist/backends/cuda/cuda-provider.js';
import { HostBuffer, OrtRuntime } from '../../packages/core/dist/backends/cuda/ort-capi.js';
import { visionGraph } from '../../packages/core/dist/backends/vision-input.js';
import { DataType } from '../../packages/core/dist/onnx/proto.js';
import { VisionIO } from '../../packages/core/dist/onnx/vit.js';

const [dir, opt = 'basic', cutArg] = process.argv.slice(2);
const ckpt = Checkpoint.open(dir);
const spec = modelRegistry(registerBuiltins(createContainer())).get(ckpt.architecture).describe(ckpt);
const full = spec.multimodal.tower;

/** Node indices whose output is a float tensor (not the integer shape subgraph). */
function floatCuts(g) {
  const ints = new Set();
  const cuts = [];
  g.nodes.forEach((n, i) => {
    const fed = n.inputs.filter((x) => x && !g.initializers.some((t) => t.name === x));
    const int = n.op === 'Shape' || (fed.length > 0 && fed.every((x) => ints.has(x)));
    for (const o of n.outputs) if (int) ints.add(o);
    if (!int && n.op !== 'Identity') cuts.push(i);
  });
  return cuts;
}

/** The tower cut after node `k`: that node's first output is the graph's output. */
function cutTower(k) {
  return {
    ...full,
    name: `${full.name}-cut${k}`,
    key: { base: full.key, cut: k },
    build(g, w) {
      full.build(g, w);
      const node = g.nodes[k];
      g.nodes.splice(k + 1);
      g.outputs.splice(0);
      g.output(node.outputs[0], VisionIO.imageFeatures, DataType.FLOAT, []);
    },
  };
}

if (cutArg !== undefined) {
  // Child: the cut graph in a session like the backend's tower session, one plain Run (ORT
  // allocates the output, whatever its shape); a crash is the exit signal.
  // CPU=1: ORT's CPU provider (onnxruntime-node's core), to check this script anywhere.
  // capi-tower.js (test helpers) imports vitest, which the GPU tree carries only for conformance.
  const cpuLibrary = async () =>
    (await import('../../packages/core/dist/testing/capi-tower.js')).ortNodeLibrary();
  const p =
    process.env.CPU === '1' ? { ort: new OrtRuntime(await cpuLibrary()), device: null } : openCudaProvider();
  const graph = visionGraph(ckpt, cutTower(Number(cutArg)));
  const so = p.ort.sessionOptions({
    optimization: opt,
    config: {
      'session.model_external_initializers_file_folder_path': graph.externalDataFolder ?? dirname(graph.path),
    },
  });
  if (p.device) p.ort.appendProvider(so, p.device, {});
  const session = p.ort.session(new Uint8Array(readFileSync(graph.path)), so);
  const [h, w] = full.imageSize;
  const pixels = new HostBuffer(2 * 3 * h * w * 4);
  new Float32Array(pixels.bytes, 0, 2 * 3 * h * w).fill(0.25);
  const input = p.ort.tensorAt(p.ort.cpuMemoryInfo(), pixels.ptr, 'float', [2, 3, h, w]);
  try {
    p.ort.run(session, null, { [VisionIO.pixelValues]: input }, [VisionIO.imageFeatures]);
  } catch (e) {
    process.stderr.write(`ORT error: ${e.message}\n`);
    process.exit(1);
  }
  process.exit(0);
}

const { GraphBuilder } = await import('../../packages/core/dist/onnx/graph-builder.js');
const probe = new GraphBuilder();
full.build(probe, (n) => n);
const cuts = floatCuts(probe);
const self = fileURLToPath(import.meta.url);
const outcome = new Map();
const run = (k) => {
  if (!outcome.has(k)) {
    const r = spawnSync(process.execPath, [self, dir, opt, String(k)], { encoding: 'utf8', timeout: 60_000 });
    outcome.set(k, { status: r.status, signal: r.signal, stderr: r.stderr.slice(-400) });
  }
  return outcome.get(k);
};
const crashed = (k) => run(k).signal !== null;
let lo = 0;
let hi = cuts.length - 1;
const result = { fixture: dir, optimization: opt, cuts: cuts.length };
if (!crashed(cuts[hi])) {
  result.first_crash = null;
  result.note = 'the whole tower ran: no crash to find at this optimization level';
} else {
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (crashed(cuts[mid])) hi = mid;
    else lo = mid + 1;
  }
  const k = cuts[lo];
  const n = probe.nodes[k];
  result.first_crash = {
    index: k,
    op: n.op,
    name: n.name,
    domain: n.domain,
    inputs: n.inputs,
    outputs: n.outputs,
  };
  result.previous_ok = lo > 0 ? { index: cuts[lo - 1], op: probe.nodes[cuts[lo - 1]].op } : null;
}
result.runs = Object.fromEntries(outcome);
console.log(JSON.stringify(result, null, 1));
