import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { basename, join } from 'node:path';
import { SwitchyardError } from '../errors.js';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I8' | 'U8' | 'F64' | 'BOOL' | 'I16';

const DTYPE_BYTES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** Where one tensor lies: a file and a byte range inside it. */
export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  file: string;
  /** Absolute byte offset in `file`. */
  offset: number;
  byteLength: number;
}

/** Reads the header of one .safetensors file, validating it against the file's size. */
export function readSafetensorsHeader(file: string): TensorEntry[] {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const what = `safetensors file ${basename(file)}`;
    if (size < 8) throw new SwitchyardError(`${what} is truncated (${size} bytes)`, 'model_load');
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 0 || headerLen > 100_000_000 || 8 + headerLen > size) {
      throw new SwitchyardError(
        `${what} is corrupt: header length ${headerLen} does not fit the file's ${size} bytes`,
        'model_load',
      );
    }
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch {
      throw new SwitchyardError(`${what} is corrupt: its header is not valid JSON`, 'model_load');
    }
    const dataStart = 8 + headerLen;
    const entries: TensorEntry[] = [];
    for (const [name, info] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const bytes = DTYPE_BYTES[info.dtype];
      const [begin, end] = info.data_offsets ?? [];
      const count = (info.shape ?? []).reduce((a, b) => a * b, 1);
      if (bytes === undefined)
        throw new SwitchyardError(
          `${what}: tensor ${name} has unsupported dtype ${info.dtype}`,
          'model_load',
        );
      if (!(end - begin === count * bytes && dataStart + end <= size && begin >= 0)) {
        throw new SwitchyardError(
          `${what} is truncated or corrupt: tensor ${name} needs bytes ${begin}..${end} of the data section but the file has ${size - dataStart}`,
          'model_load',
        );
      }
      entries.push({
        name,
        dtype: info.dtype as SafetensorsDtype,
        shape: info.shape,
        file,
        offset: dataStart + begin,
        byteLength: end - begin,
      });
    }
    return entries;
  } finally {
    closeSync(fd);
  }
}

/** All tensors of a checkpoint folder: model.safetensors or the shards named by model.safetensors.index.json. */
export function indexSafetensors(dir: string): Map<string, TensorEntry> {
  const single = join(dir, 'model.safetensors');
  const indexFile = join(dir, 'model.safetensors.index.json');
  let files: string[];
  if (existsSync(indexFile)) {
    const index = JSON.parse(readFileSync(indexFile, 'utf8')) as { weight_map: Record<string, string> };
    files = [...new Set(Object.values(index.weight_map ?? {}))].map((f) => join(dir, f));
    for (const f of files) {
      if (!existsSync(f))
        throw new SwitchyardError(
          `shard ${basename(f)} named in model.safetensors.index.json is missing from ${dir}`,
          'model_load',
        );
    }
  } else if (existsSync(single)) {
    files = [single];
  } else {
    throw new SwitchyardError(`no model.safetensors or model.safetensors.index.json in ${dir}`, 'model_load');
  }
  const map = new Map<string, TensorEntry>();
  for (const f of files) for (const e of readSafetensorsHeader(f)) map.set(e.name, e);
  return map;
}

/** Reads a tensor's bytes as float32 (converting fp16/bf16). */
export function readTensorF32(entry: TensorEntry): Float32Array {
  const raw = readTensorBytes(entry);
  return toFloat32(raw, entry.dtype);
}

export function readTensorBytes(entry: TensorEntry): Uint8Array {
  const fd = openSync(entry.file, 'r');
  try {
    const buf = Buffer.alloc(entry.byteLength);
    readSync(fd, buf, 0, entry.byteLength, entry.offset);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } finally {
    closeSync(fd);
  }
}

export function toFloat32(raw: Uint8Array, dtype: SafetensorsDtype): Float32Array {
  const n = raw.byteLength / DTYPE_BYTES[dtype];
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const out = new Float32Array(n);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    case 'F16': {
      const table = halfTable();
      const halves =
        raw.byteOffset % 2 === 0
          ? new Uint16Array(raw.buffer, raw.byteOffset, n)
          : new Uint16Array(raw.slice().buffer);
      for (let i = 0; i < n; i++) out[i] = table[halves[i]];
      return out;
    }
    case 'BF16': {
      const u32 = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u32[i] = view.getUint16(i * 2, true) << 16;
      return out;
    }
    default:
      throw new SwitchyardError(`cannot convert ${dtype} weights to float32`, 'model_load');
  }
}

let HALF_TABLE: Float32Array | undefined;

/** All 65,536 half values as floats (256 KiB), for converting large fp16 tensors fast. */
function halfTable(): Float32Array {
  if (!HALF_TABLE) {
    HALF_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) HALF_TABLE[h] = halfToFloat(h);
  }
  return HALF_TABLE;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Float32 → IEEE half, round to nearest even. */
export function floatToHalf(v: number): number {
  const f32 = new Float32Array([v]);
  const x = new Uint32Array(f32.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  let exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  exp = exp - 127 + 15;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - exp;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = sign | (exp << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return half;
}

/** Float32 → IEEE half (round to nearest even) over a whole array, without per-element allocation. */
export function float32ToFloat16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000;
    const exp = ((x >>> 23) & 0xff) - 127 + 15;
    let mant = x & 0x7fffff;
    if (((x >>> 23) & 0xff) === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
    } else if (exp >= 31) {
      out[i] = sign | 0x7c00;
    } else if (exp <= 0) {
      if (exp < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - exp;
      let half = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      if (rem > mid || (rem === mid && half & 1)) half++;
      out[i] = sign | half;
    } else {
      let half = sign | (exp << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
      out[i] = half;
    }
  }
  return out;
}

/** float32 → bfloat16 bits, rounding to nearest even (NaN stays NaN), as torch's `.to(bfloat16)`. */
export function float32ToBfloat16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i];
    if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) {
      out[i] = (x >>> 16) | 0x40;
      continue;
    }
    out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Float32 values as the device dtype's bits: float16 or bfloat16 (for uploads and graph tables). */
export function float32ToHalf(src: Float32Array, dtype: 'float16' | 'bfloat16'): Uint16Array {
  return dtype === 'bfloat16' ? float32ToBfloat16(src) : float32ToFloat16(src);
}
