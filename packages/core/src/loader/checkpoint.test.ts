import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture, fixtureTitle } from '../testing/fixtures.js';
import { Checkpoint, readRope } from './checkpoint.js';
import {
  float32ToFloat16,
  floatToHalf,
  halfToFloat,
  indexSafetensors,
  readSafetensorsHeader,
  readTensorF32,
  toFloat32,
} from './safetensors.js';

const tmp = mkdtempSync(join(tmpdir(), 'switchyard-loader-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Writes a safetensors file from named tensors of one dtype. */
function writeSafetensors(
  path: string,
  tensors: { name: string; dtype: 'F32' | 'F16'; shape: number[]; data: Uint8Array }[],
): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, ...tensors.map((t) => t.data)]));
}

describe('config.json in both transformers styles', () => {
  it('reads rope from 4.x rope_theta + rope_scaling (llama3)', () => {
    const rope = readRope({
      rope_theta: 500000,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
    });
    expect(rope).toMatchObject({
      theta: 500000,
      type: 'llama3',
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
  });

  it('reads rope from 5.x rope_parameters', () => {
    expect(readRope({ rope_parameters: { rope_theta: 1e6, rope_type: 'default' } })).toMatchObject({
      theta: 1e6,
      type: 'default',
    });
    expect(readRope({ rope_parameters: { rope_theta: 5e5, rope_type: 'llama3', factor: 32 } })).toMatchObject(
      { type: 'llama3', factor: 32 },
    );
  });

  it('rejects rope types it cannot run, naming the supported ones', () => {
    expect(() => readRope({ rope_scaling: { type: 'yarn', factor: 4 } })).toThrow(
      /rope type 'yarn' is not supported; supported: default, llama3/,
    );
  });

  for (const name of ['llama3-tiny', 'qwen2-tiny']) {
    const fx = fixture(name);
    it.skipIf(fx.missing)(fixtureTitle(fx, `opens ${name} (dtype, eos, template)`), () => {
      const ck = Checkpoint.open(fx.dir);
      expect(ck.dtype).toBe('float32');
      expect(ck.eosTokenIds.length).toBeGreaterThan(0);
      expect(ck.chatTemplate).toBeDefined();
    });
  }

  const qwen = fixture('qwen2-tiny');
  it.skipIf(qwen.missing)(
    fixtureTitle(qwen, 'takes eos ids from generation_config.json, a list included'),
    () => {
      const fx = qwen;
      const dir = join(tmp, 'eos-list');
      copyDir(fx.dir, dir);
      writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [2, 7] }));
      expect(Checkpoint.open(dir).eosTokenIds).toEqual([2, 7]);
    },
  );
});

describe('safetensors', () => {
  it('reads sharded checkpoints through model.safetensors.index.json', () => {
    const dir = join(tmp, 'sharded');
    copyDir(null, dir);
    const a = new Float32Array([1, 2, 3, 4]);
    const b = new Uint16Array([floatToHalf(0.5), floatToHalf(-2)]);
    writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), [
      { name: 'a', dtype: 'F32', shape: [2, 2], data: new Uint8Array(a.buffer) },
    ]);
    writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), [
      { name: 'b', dtype: 'F16', shape: [2], data: new Uint8Array(b.buffer) },
    ]);
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({
        weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' },
      }),
    );
    const index = indexSafetensors(dir);
    expect([...readTensorF32(index.get('a')!)]).toEqual([1, 2, 3, 4]);
    expect([...readTensorF32(index.get('b')!)]).toEqual([0.5, -2]);
  });

  it('names a missing shard', () => {
    const dir = join(tmp, 'missing-shard');
    copyDir(null, dir);
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { a: 'nope.safetensors' } }),
    );
    expect(() => indexSafetensors(dir)).toThrow(
      /shard nope.safetensors named in model.safetensors.index.json is missing/,
    );
  });

  it('reports truncated files and corrupt headers', () => {
    const path = join(tmp, 'bad.safetensors');
    writeSafetensors(path, [{ name: 'a', dtype: 'F32', shape: [4], data: new Uint8Array(16) }]);
    const full = readFileSync(path);
    writeFileSync(path, full.subarray(0, full.length - 4));
    expect(() => readSafetensorsHeader(path)).toThrow(/truncated or corrupt: tensor a/);
    writeFileSync(path, Buffer.from([1, 0, 0, 0]));
    expect(() => readSafetensorsHeader(path)).toThrow(/truncated \(4 bytes\)/);
    writeFileSync(path, Buffer.concat([Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{bad}')]));
    expect(() => readSafetensorsHeader(path)).toThrow(/header is not valid JSON/);
  });

  it('converts fp16 and bf16 exactly', () => {
    for (const v of [0, 1, -1, 0.1, 65504, 6e-8, -2.5]) expect(halfToFloat(floatToHalf(v))).toBeCloseTo(v, 2);
    const bf16 = new Uint16Array([0x3f80, 0xc000, 0x3e80]); // 1, -2, 0.25
    expect([...toFloat32(new Uint8Array(bf16.buffer), 'BF16')]).toEqual([1, -2, 0.25]);
  });
});

describe('checkpoint folder errors', () => {
  it('names a missing folder', () => {
    expect(() => Checkpoint.open(join(tmp, 'nothing-here'))).toThrow(/does not exist/);
  });

  it('names a config without architectures', () => {
    const dir = join(tmp, 'noarch');
    copyDir(null, dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'llama' }));
    expect(() => Checkpoint.open(dir)).toThrow(/no "architectures" list/);
  });
});

function copyDir(from: string | null, to: string): void {
  rmSync(to, { recursive: true, force: true });
  mkdirSync(to, { recursive: true });
  if (from) for (const f of readdirSync(from)) copyFileSync(join(from, f), join(to, f));
}

describe('float32ToFloat16', () => {
  it('agrees with floatToHalf on normals, subnormals, rounding ties and specials', () => {
    const values = [
      0,
      -0,
      1,
      -1,
      0.1,
      65504,
      65520,
      1e-5,
      6e-8,
      3e-8,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      Infinity,
      -Infinity,
      1e9,
    ];
    const out = float32ToFloat16(Float32Array.from(values));
    values.forEach((v, i) => {
      expect(out[i]).toBe(floatToHalf(v));
    });
  });
});
