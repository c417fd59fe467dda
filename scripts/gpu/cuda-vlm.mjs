// The VLM fixtures through the engine on cuda: the decoder on the GPU, the towers wherever the
// cuda backend runs them (the CPU provider for now; decision 0008's addendum). GPU machine.
//   node scripts/gpu/cuda-vlm.mjs FIXTURES_DIR > vlm.json
import { vlmParity } from './vlm-parity.mjs';

const rows = await vlmParity(process.argv[2], { device: 'cuda', blockSize: 256 });
const ok = rows.every((r) => r.prompt_ids_equal && r.ids_equal_where_margin_over_0_05);
console.log(JSON.stringify({ vlm_ok: ok, vlm: rows }, null, 1));
console.error(`cuda VLM parity: ${ok ? 'PASS' : 'FAIL'}`);
