// The VLM fixtures through the engine on cuda (a KV pool of 4,096 tokens): the decoder on the GPU,
// the towers on the CPU provider (the default) or, with TOWERS=cuda, on the CUDA provider
// (settings.visionTower; decision 0008's addenda). GPU machine.
//   [TOWERS=cuda] node scripts/gpu/cuda-vlm.mjs FIXTURES_DIR > vlm.json
import { vlmParity } from './vlm-parity.mjs';

const towers = process.env.TOWERS ?? 'cpu';
const rows = await vlmParity(process.argv[2], {
  device: 'cuda',
  blockSize: 256,
  settings: { visionTower: towers },
});
const ok = rows.every((r) => r.prompt_ids_equal && r.ids_equal_where_margin_over_0_05);
console.log(JSON.stringify({ towers, vlm_ok: ok, vlm: rows }, null, 1));
console.error(`cuda VLM parity (towers on ${towers}): ${ok ? 'PASS' : 'FAIL'}`);
