import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join, relative } from 'node:path';
import type { Checkpoint } from '../loader/checkpoint.js';
import { reportLoadProgress } from '../loader/progress.js';
import {
  float32ToBfloat16,
  float32ToFloat16,
  readTensorF32,
  type TensorEntry,
} from '../loader/safetensors.js';
import { GraphBuilder } from './graph-builder.js';
import { type Int4Job, quantizeInt4Jobs } from './int4-jobs.js';
import { DataType, type DataTypeCode, encodeModel, type TensorDef } from './proto.js';
import type { DerivedWeights, WeightRef } from './weights.js';

/** Bump when the emitted graphs change, so cached graphs are rebuilt. */
const BUILDER_VERSION = 3;

export function cacheRoot(): string {
  return process.env.SWITCHYARD_CACHE_DIR ?? join(homedir(), '.cache', 'switchyard');
}

export interface CachedGraph {
  /** The .onnx file. */
  path: string;
  /**
   * Set when the graph's external data lies in the checkpoint folder: ORT must then load the graph
   * from memory with this folder as its external-data root (it refuses data outside the model's
   * own folder, symlinks included).
   */
  externalDataFolder?: string;
}

export type { DerivedWeights } from './weights.js';

export type WeightDtype = 'float32' | 'float16' | 'bfloat16';

const SAFETENSORS_DTYPE: Record<WeightDtype, string> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/**
 * Returns a graph built from a checkpoint's weights, building it on a cache miss. `key` holds
 * everything the graph depends on besides the weights (spec, provider). When every weight is
 * already in `dtype` the graph references them in place inside the checkpoint's safetensors files
 * (no copy); otherwise all weights are converted once into `weights.bin` beside the graph.
 */
export function cachedGraph(
  ckpt: Checkpoint,
  name: string,
  key: object,
  build: (g: GraphBuilder, w: WeightRef, derived: DerivedWeights) => void,
  dtype: WeightDtype = 'float32',
  { convertAll = false } = {},
): CachedGraph {
  const files = [...new Set([...ckpt.tensors.values()].map((t) => t.file))].sort();
  const fingerprint = files.map((f) => {
    const st = statSync(f);
    return `${f}:${st.size}:${st.mtimeMs}`;
  });
  const hash = createHash('sha256')
    .update(JSON.stringify({ v: BUILDER_VERSION, name, key, dtype, fingerprint }))
    .digest('hex')
    .slice(0, 20);
  const dir = join(cacheRoot(), 'graphs', hash);
  const modelPath = join(dir, `${name}.onnx`);
  const inPlace =
    !convertAll && [...ckpt.tensors.values()].every((t) => t.dtype === SAFETENSORS_DTYPE[dtype]);
  const result: CachedGraph = { path: modelPath, externalDataFolder: inPlace ? ckpt.dir : undefined };
  if (existsSync(modelPath)) return result;

  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(tmp, { recursive: true });
  try {
    const converted = new ConvertedWeights(join(tmp, 'weights.bin'), dtype);
    const g = new GraphBuilder();
    const added = new Map<string, string>();
    // Progress in weights touched, out of the checkpoint's (a VLM's decoder touches only its own).
    const stage = `building the ${name} graph${inPlace ? '' : ` (${dtype} weights)`}`;
    const total = ckpt.tensors.size;
    let touched = 0;
    const tick = () => reportLoadProgress(stage, Math.min(++touched, total), total);
    reportLoadProgress(stage, 0, total);
    const derived: DerivedWeights = {
      read: (weight) => {
        tick();
        return readTensorF32(ckpt.tensor(weight));
      },
      add: (def, bytes) => {
        if (inPlace) throw new Error('derived weights need cachedGraph(..., { convertAll: true })');
        g.initializer(converted.addBytes(def, bytes));
        return def.name;
      },
      int4: (weights, N, K, id) => {
        if (inPlace) throw new Error('derived weights need cachedGraph(..., { convertAll: true })');
        const B = converted.reserve(
          { name: `${id}.B`, dataType: DataType.UINT8, dims: [N, K / 32, 16] },
          (N * K) / 2,
        );
        const scales = converted.reserve(
          { name: `${id}.scales`, dataType: DataType.FLOAT16, dims: [(N * K) / 32] },
          (N * K) / 16,
        );
        g.initializer(B);
        g.initializer(scales);
        for (const _ of weights) tick();
        int4Jobs.push({
          parts: weights.map((w) => ckpt.tensor(w)),
          N,
          K,
          offsetB: B.external!.offset,
          offsetScales: scales.external!.offset,
        });
        return { B: B.name, scales: scales.name };
      },
    };
    const int4Jobs: Int4Job[] = [];
    build(
      g,
      (weight) => {
        let id = added.get(weight);
        if (id) return id;
        const entry = ckpt.tensor(weight);
        tick();
        id = weight;
        g.initializer(inPlace ? inCheckpoint(entry, ckpt.dir, dtype) : converted.add(entry));
        added.set(weight, id);
        return id;
      },
      derived,
    );
    converted.close();
    reportLoadProgress(stage, total, total);
    quantizeInt4Jobs(int4Jobs, join(tmp, 'weights.bin'));
    writeFileSync(join(tmp, `${name}.onnx`), encodeModel(g.build({ '': 21, 'com.microsoft': 1 }, name)));
    mkdirSync(join(cacheRoot(), 'graphs'), { recursive: true });
    try {
      renameSync(tmp, dir);
    } catch {
      // Another process built it first.
      rmSync(tmp, { recursive: true, force: true });
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return result;
}

const ONNX_DTYPE = {
  float32: DataType.FLOAT,
  float16: DataType.FLOAT16,
  bfloat16: DataType.BFLOAT16,
} as const;

function inCheckpoint(entry: TensorEntry, dir: string, dtype: WeightDtype): TensorDef {
  return {
    name: entry.name,
    dataType: ONNX_DTYPE[dtype],
    dims: entry.shape,
    external: { location: relative(dir, entry.file), offset: entry.offset, length: entry.byteLength },
  };
}

/** Weights converted to the graph's dtype, appended to one external-data file. */
class ConvertedWeights {
  private fd?: number;
  private offset = 0;

  constructor(
    private readonly path: string,
    private readonly dtype: WeightDtype,
  ) {}

  add(entry: TensorEntry): TensorDef {
    const f32 = readTensorF32(entry);
    const data =
      this.dtype === 'float16'
        ? float32ToFloat16(f32)
        : this.dtype === 'bfloat16'
          ? float32ToBfloat16(f32)
          : f32;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return this.addBytes({ name: entry.name, dataType: ONNX_DTYPE[this.dtype], dims: entry.shape }, bytes);
  }

  addBytes(tensor: { name: string; dataType: DataTypeCode; dims: number[] }, bytes: Uint8Array): TensorDef {
    const def = this.reserve(tensor, bytes.length);
    writeSync(this.fd!, bytes, 0, bytes.length, def.external!.offset);
    return def;
  }

  /** Room for a tensor of `length` bytes, written later at its `external.offset` (by `addBytes` or a worker). */
  reserve(tensor: { name: string; dataType: DataTypeCode; dims: number[] }, length: number): TensorDef {
    this.fd ??= openSync(this.path, 'w');
    const def: TensorDef = { ...tensor, external: { location: 'weights.bin', offset: this.offset, length } };
    this.offset += length;
    // ORT maps external data; keep each tensor 64-byte aligned.
    this.offset = Math.ceil(this.offset / 64) * 64;
    return def;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
  }
}
