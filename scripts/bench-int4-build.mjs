// How long int4 quantization of a checkpoint's linear weights takes, on 1 thread and on N.
//   node scripts/bench-int4-build.mjs [tensors=8] [rows=4096] [cols=4096] [threads=8]
// Writes a random fp16 safetensors file to a temp folder, then prints one JSON line.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensorsHeader } from '../packages/core/dist/loader/safetensors.js';
import { quantizeInt4Jobs } from '../packages/core/dist/onnx/int4-jobs.js';

const [count = 8, rows = 4096, cols = 4096, threads = 8] = process.argv.slice(2).map(Number);
const dir = mkdtempSync(join(tmpdir(), 'int4-bench-'));
try {
  const bytes = rows * cols * 2;
  const header = {};
  for (let i = 0; i < count; i++)
    header[`w${i}`] = { dtype: 'F16', shape: [rows, cols], data_offsets: [i * bytes, (i + 1) * bytes] };
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const data = new Uint16Array((count * bytes) / 2);
  for (let i = 0; i < data.length; i++) data[i] = 0x2000 + ((i * 2654435761) >>> 22); // small fp16 values
  const file = join(dir, 'model.safetensors');
  writeFileSync(file, Buffer.concat([len, json, Buffer.from(data.buffer)]));
  const entries = readSafetensorsHeader(file);
  const jobs = entries.map((parts, i) => ({
    parts: [parts],
    N: rows,
    K: cols,
    offsetB: i * ((rows * cols) / 2 + (rows * cols) / 16 + 64),
    offsetScales: i * ((rows * cols) / 2 + (rows * cols) / 16 + 64) + (rows * cols) / 2,
  }));
  const out = { weights: count * rows * cols };
  for (const n of [1, threads]) {
    const path = join(dir, `w${n}.bin`);
    writeFileSync(path, new Uint8Array(0));
    const t = performance.now();
    quantizeInt4Jobs(jobs, path, n);
    out[`seconds_${n}_threads`] = (performance.now() - t) / 1000;
  }
  out.ns_per_weight_1_thread = (out.seconds_1_threads * 1e9) / out.weights;
  console.log(JSON.stringify(out));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
