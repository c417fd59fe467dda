import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { expect } from 'vitest';
import { CapiVisionRunner } from '../backends/cuda/capi-vision-runner.js';
import { OrtRuntime } from '../backends/cuda/ort-capi.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import type { VisionTowerSpec } from '../model.js';
import type { VisionRunner } from '../vision-runner.js';
import { maxAbsDiff } from './fixtures.js';
import { readF32 } from './vit-reference.js';

/**
 * onnxruntime-node's own core library: the ORT C API binding runs its CPU provider, so what the
 * cuda backend does through the binding is tested in CI without any CUDA package (linux-x64).
 */
export function ortNodeLibrary(): string | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64') return undefined;
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(dir, 'bin', 'napi-v6', 'linux', 'x64', 'libonnxruntime.so.1');
}

/**
 * A tower in the session the cuda backend opens for it (`CapiVisionRunner`), here on ORT's CPU
 * provider; `runtime.live` counts its native resources (1, the env, once disposed).
 */
export function openCapiTower(
  ckpt: Checkpoint,
  tower: VisionTowerSpec,
): { runner: CapiVisionRunner; runtime: OrtRuntime } {
  const library = ortNodeLibrary();
  if (!library) throw new Error('the C API tower runs on linux-x64 only');
  const runtime = new OrtRuntime(library);
  return { runner: CapiVisionRunner.open(runtime, ckpt, tower), runtime };
}

/**
 * Checks the C API session (`openCapiTower`) against `reference` (the cpu backend's runner) on the
 * fixture's pixel files: each case alone within 1e-5, then every case's images as one batch split
 * back in order, a bad shape refused; and that disposing releases every native resource.
 */
export async function checkCapiTower(
  reference: VisionRunner,
  ckpt: Checkpoint,
  tower: VisionTowerSpec,
  files: { file: string; shape: number[] }[],
): Promise<void> {
  const cases = files.map(({ file, shape }) => ({ pixels: readF32(file), shape }));
  expect(cases.length).toBeGreaterThan(0);
  const { runner, runtime } = openCapiTower(ckpt, tower);
  try {
    const solo = [];
    for (const c of cases) {
      const want = await reference.encode(c.pixels, c.shape);
      const got = await runner.encode(c.pixels, c.shape);
      expect(got.shape).toEqual(want.shape);
      expect(maxAbsDiff(got.data, want.data)).toBeLessThan(1e-5);
      solo.push(got);
    }
    const all = Float32Array.from(cases.flatMap((c) => [...c.pixels]));
    const tile = cases[0].shape.slice(-3);
    const batched = await runner.encode(all, [all.length / (tile[0] * tile[1] * tile[2]), ...tile]);
    expect(batched.shape[0]).toBe(solo.reduce((n, s) => n + s.shape[0], 0));
    expect(maxAbsDiff(batched.data, Float32Array.from(solo.flatMap((s) => [...s.data])))).toBeLessThan(1e-5);
    await expect(runner.encode(new Float32Array(10), [1, ...tile])).rejects.toThrow(/do not fit|needs/);
  } finally {
    await runner.dispose();
  }
  expect(runtime.live).toBe(1); // the env: session, binding and buffers are released
  runtime.close();
}
