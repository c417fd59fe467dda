#!/usr/bin/env node
// Writes a Llama-shaped checkpoint with random fp32 weights and the demo model's tokenizer, for
// benchmarks at sizes the fixtures do not reach (weights larger than the CPU caches).
//   node scripts/make-random-checkpoint.mjs OUT_DIR [--hidden 1024] [--layers 8] [--intermediate 4096]
//     [--heads 16] [--kv-heads 4] [--seed 0]
import {
  closeSync,
  copyFileSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    hidden: { type: 'string', default: '1024' },
    layers: { type: 'string', default: '8' },
    intermediate: { type: 'string', default: '4096' },
    heads: { type: 'string', default: '16' },
    'kv-heads': { type: 'string', default: '4' },
    seed: { type: 'string', default: '0' },
  },
});
const out = positionals[0];
if (!out) throw new Error('usage: make-random-checkpoint.mjs OUT_DIR [options]');
const demo = join(dirname(fileURLToPath(import.meta.url)), '..', 'models', 'switchyard-demo-text');
const H = Number(values.hidden);
const L = Number(values.layers);
const I = Number(values.intermediate);
const nh = Number(values.heads);
const nkv = Number(values['kv-heads']);
const hd = H / nh;
const config = JSON.parse(readFileSync(join(demo, 'config.json'), 'utf8'));
const V = config.vocab_size;
Object.assign(config, {
  hidden_size: H,
  num_hidden_layers: L,
  intermediate_size: I,
  num_attention_heads: nh,
  num_key_value_heads: nkv,
  head_dim: hd,
  dtype: 'float32',
  tie_word_embeddings: false,
  max_position_embeddings: 4096,
});
mkdirSync(out, { recursive: true });
for (const f of ['tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'generation_config.json'])
  copyFileSync(join(demo, f), join(out, f));
writeFileSync(join(out, 'config.json'), JSON.stringify(config, null, 2));

const shapes = [
  ['model.embed_tokens.weight', [V, H]],
  ['model.norm.weight', [H]],
  ['lm_head.weight', [V, H]],
];
for (let l = 0; l < L; l++) {
  const p = `model.layers.${l}`;
  shapes.push(
    [`${p}.input_layernorm.weight`, [H]],
    [`${p}.post_attention_layernorm.weight`, [H]],
    [`${p}.self_attn.q_proj.weight`, [nh * hd, H]],
    [`${p}.self_attn.k_proj.weight`, [nkv * hd, H]],
    [`${p}.self_attn.v_proj.weight`, [nkv * hd, H]],
    [`${p}.self_attn.o_proj.weight`, [H, nh * hd]],
    [`${p}.mlp.gate_proj.weight`, [I, H]],
    [`${p}.mlp.up_proj.weight`, [I, H]],
    [`${p}.mlp.down_proj.weight`, [H, I]],
  );
}
const header = {};
let offset = 0;
for (const [name, shape] of shapes) {
  const bytes = shape.reduce((a, b) => a * b, 1) * 4;
  header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
  offset += bytes;
}
const json = Buffer.from(JSON.stringify(header));
const len = Buffer.alloc(8);
len.writeBigUInt64LE(BigInt(json.length));
const fd = openSync(join(out, 'model.safetensors'), 'w');
writeSync(fd, len);
writeSync(fd, json);
let s = Number(values.seed) >>> 0 || 1;
const rand = () => {
  s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
  return (s / 2 ** 32) * 2 - 1;
};
for (const [name, shape] of shapes) {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  if (name.endsWith('norm.weight')) data.fill(1);
  else for (let i = 0; i < n; i++) data[i] = rand() * 0.05;
  writeSync(fd, new Uint8Array(data.buffer));
}
closeSync(fd);
console.log(`${out}: ${(offset / 2 ** 20).toFixed(0)} MiB of fp32 weights, ${L} layers × ${H}, vocab ${V}`);
