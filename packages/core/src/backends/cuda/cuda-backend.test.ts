import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Checkpoint } from '../../loader/checkpoint.js';
import type { ModelSpec, VisionTowerSpec } from '../../model.js';
import { cudaBackend } from './cuda-backend.js';
import { kvTokensForMemory, takesInt4 } from './cuda-executor.js';

/** `createExecutor` on no checkpoint: what the backend checks before it touches one. */
const createWith = (
  dtype: string,
  quantization: 'none' | 'int4',
  blockSize = 128,
  settings?: Record<string, unknown>,
) =>
  cudaBackend.createExecutor({} as Checkpoint, { decoder: { headDim: 64 } } as ModelSpec, {
    blockSize,
    maxModelLen: 1024,
    dtype,
    quantization,
    settings,
  });

describe('cudaBackend', () => {
  it('declares fp16 and bf16 with int4 and fails a missing install with the fix command', async () => {
    expect(cudaBackend.name).toBe('cuda');
    expect(cudaBackend.dtypes).toEqual(['float16', 'bfloat16']);
    expect(cudaBackend.quantizations).toEqual(['none', 'int4']);
    const empty = mkdtempSync(join(tmpdir(), 'no-ort-'));
    const saved = process.env.SWITCHYARD_ORT_CUDA_DIR;
    process.env.SWITCHYARD_ORT_CUDA_DIR = empty;
    try {
      await expect(createWith('float16', 'none')).rejects.toThrow(
        /libonnxruntime\.so, not found in .*switchyard setup cuda/,
      );
    } finally {
      if (saved === undefined) delete process.env.SWITCHYARD_ORT_CUDA_DIR;
      else process.env.SWITCHYARD_ORT_CUDA_DIR = saved;
      rmSync(empty, { recursive: true });
    }
  });

  it('refuses a dtype it does not serve', async () => {
    await expect(createWith('float32', 'none')).rejects.toThrow(
      /dtype 'float32' is not supported on the cuda device; use float16/,
    );
  });

  it('refuses int4 weights with bf16 activations, saying what to use', async () => {
    await expect(createWith('bfloat16', 'int4', 256)).rejects.toThrow(
      /int4 weights run with float16 activations on cuda; use --dtype float16/,
    );
  });

  it('refuses a block size PagedAttention cannot run, naming the default', async () => {
    for (const blockSize of [8, 48]) {
      await expect(createWith('float16', 'none', blockSize)).rejects.toThrow(
        new RegExp(`power of two and at least 16, got ${blockSize}; use --block-size 256`),
      );
    }
  });

  it('runs int4 weights for small decode batches only, as int4MaxBatch says', async () => {
    expect(takesInt4(1, 1, 4)).toBe(true);
    expect(takesInt4(1, 4, 4)).toBe(true);
    expect(takesInt4(1, 5, 4)).toBe(false);
    expect(takesInt4(2, 1, 4)).toBe(false); // a prefill chunk runs the half weights
    for (const bad of [0, 2.5, 'some']) {
      await expect(createWith('float16', 'int4', 256, { int4MaxBatch: bad })).rejects.toThrow(
        /int4MaxBatch must be a whole number of sequences \(1 or more\) or 'all'/,
      );
    }
  });

  it('runs towers where settings.visionTower says, refusing other places', async () => {
    const tower = { name: 'tower' } as VisionTowerSpec;
    await expect(
      cudaBackend.createVisionRunner!({} as Checkpoint, tower, {
        dtype: 'float16',
        settings: { visionTower: 'gpu' },
      }),
    ).rejects.toThrow(/visionTower must be 'cpu' or 'cuda', got 'gpu'/);
  });

  it('sizes the KV pool like vLLM: in-use memory plus the pool within utilization × total', () => {
    const GiB = 2 ** 30;
    // 140 GiB card, 20 GiB in use after the weights: 0.9 leaves 106 GiB for KV.
    expect(kvTokensForMemory({ total: 140 * GiB, free: 120 * GiB }, 0.9, 131072)).toBe(
      Math.floor((0.9 * 140 * GiB - 20 * GiB) / 131072),
    );
    expect(() => kvTokensForMemory({ total: 140 * GiB, free: 10 * GiB }, 0.9, 131072)).toThrow(
      /memoryUtilization 0.9 leaves no room for the KV cache: 130.0 GiB of 140.0 GiB are in use/,
    );
    expect(() => kvTokensForMemory({ total: 1, free: 1 }, 1.5, 1)).toThrow(/must be in \(0, 1\], got 1.5/);
  });
});

describe('the cuda backend defaults', () => {
  it('asks for KV blocks of 256 tokens when the user names none (PagedAttention is slow below 128)', () => {
    expect(cudaBackend.defaultBlockSize).toBe(256);
  });
});
