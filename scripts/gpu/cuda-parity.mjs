// fp16 (or DTYPE=bfloat16) parity of the cuda path against the transformers fixtures (GPU machine).
//   [DTYPE=bfloat16] node scripts/gpu/cuda-parity.mjs FIXTURES_DIR [blockSize] > parity.json
// 1) executor alone: step-0 logits vs the reference, then greedy decode one token at a time
//    (prefill without a graph, decode steps through the B=1 CUDA graph, logits read back);
// 2) the engine: every chat case of a fixture at once (batched greedy decode, graph buckets,
//    argmax on the device), ids vs the reference;
// 3) the VLM fixtures through the engine, vision towers on the CUDA provider too (all cases at once).
// The pass criterion (logits within 5e-2, ids where margins exceed 5e-2) is the fp16 one; bf16 keeps
// 8 bits of mantissa, so its rows are reported, and judged by the ids alone.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint, createContainer, modelRegistry } from '@switchyard/core';
import { registerBuiltins } from '@switchyard/server';
import { CudaExecutor } from '../../packages/core/dist/backends/cuda/index.js';
import { createCudaEngine } from './cuda-engine.mjs';
import { executorCase, idsAgree } from './parity-case.mjs';
import { vlmParity } from './vlm-parity.mjs';

const root = process.argv[2];
const blockSize = Number(process.argv[3] ?? 128);
const dtype = process.env.DTYPE ?? 'float16';
const container = registerBuiltins(createContainer());
const results = [];
const engineResults = [];
for (const name of ['qwen2-tiny', 'llama3-tiny', 'qwen3-tiny']) {
  const dir = join(root, name);
  const ckpt = Checkpoint.open(dir);
  const spec = modelRegistry(container).get(ckpt.architecture).describe(ckpt);
  const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8'));
  const perSeq = Math.ceil(1024 / blockSize);
  const ex = await CudaExecutor.create(ckpt, spec.decoder, {
    blockSize,
    kvCacheTokens: perSeq * blockSize * 4,
    maxModelLen: 1024,
    quantization: 'none',
    dtype,
  });
  for (const [i, c] of ref.chat.entries()) {
    const blocks = Array.from({ length: perSeq }, (_, x) => x + (i % 4) * perSeq);
    const row = await executorCase(ex, dir, c, blocks);
    results.push({ fixture: name, case: i, ...row, graph_steps: ex.graphSteps });
  }
  await ex.dispose();

  const engine = await createCudaEngine({
    model: dir,
    maxModelLen: 1024,
    kvCacheTokens: 64 * blockSize,
    blockSize,
    dtype,
  });
  const out = await engine.generate(
    ref.chat.map((c) => ({
      promptIds: c.prompt_ids,
      sampling: { maxTokens: c.generated_ids.length, ignoreEos: true },
    })),
  );
  for (const [i, c] of ref.chat.entries()) {
    engineResults.push({ fixture: name, case: i, ...idsAgree(out[i].outputs[0].tokenIds, c) });
  }
  await engine.close();
}
const logitsOk = dtype !== 'float16' || results.every((r) => r.max_abs_logit_diff < 5e-2);
const textOk =
  logitsOk &&
  results.every((r) => r.ids_equal_where_margin_over_0_05) &&
  engineResults.every((r) => r.ids_equal_where_margin_over_0_05);
const maxDiff = Math.max(...results.map((r) => r.max_abs_logit_diff));
// The text results first (one JSON line), so a failure in the VLM part loses nothing.
console.log(
  JSON.stringify({
    dtype,
    block_size: blockSize,
    text_ok: textOk,
    max_abs_logit_diff: maxDiff,
    executor: results,
    engine: engineResults,
  }),
);
console.error(
  `cuda text parity (${dtype}, block ${blockSize}): ${textOk ? 'PASS' : 'FAIL'}; max logit diff ${maxDiff.toFixed(4)}`,
);
if (process.env.VLM !== '0') {
  const vlm = await vlmParity(root, { device: 'cuda', blockSize, dtype });
  const vlmOk = vlm.every((r) => r.prompt_ids_equal && r.ids_equal_where_margin_over_0_05);
  console.log(JSON.stringify({ dtype, vlm_ok: vlmOk, vlm }));
  console.error(`cuda VLM parity (${dtype}, towers on cuda): ${vlmOk ? 'PASS' : 'FAIL'}`);
}
