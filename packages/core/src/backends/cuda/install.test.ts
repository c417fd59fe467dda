import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { locateCudaLibraries, ORT_CUDA_FILES, setupCuda } from './install.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'cuda-install-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const touch = (dir: string, names: string[]) => {
  mkdirSync(dir, { recursive: true });
  for (const n of names) writeFileSync(join(dir, n), n);
};
const CUDA = ['libcudart.so.13', 'libcublasLt.so.13', 'libcublas.so.13', 'libcurand.so.10'];

describe('locateCudaLibraries', () => {
  it('names the missing ORT library and the fix command', () => {
    const ort = tmp();
    touch(ort, ['libonnxruntime.so']);
    expect(() => locateCudaLibraries({ ortDir: ort, env: {}, probePython: false })).toThrow(
      /libonnxruntime_providers_shared\.so, not found in .*; run `switchyard setup cuda`/,
    );
  });

  it('names the missing CUDA runtime library', () => {
    const ort = tmp();
    touch(ort, [...ORT_CUDA_FILES]);
    const lib = tmp();
    touch(lib, ['libcudart.so.13']);
    expect(() =>
      locateCudaLibraries({
        env: { SWITCHYARD_ORT_CUDA_DIR: ort, LD_LIBRARY_PATH: lib },
        probePython: false,
      }),
    ).toThrow(/needs libcublasLt\.so\.13 \(CUDA 13\).*--cuda-lib-dir/);
    touch(lib, CUDA.slice(1));
    expect(() =>
      locateCudaLibraries({
        env: { SWITCHYARD_ORT_CUDA_DIR: ort, LD_LIBRARY_PATH: lib },
        probePython: false,
      }),
    ).toThrow(/libcudnn\.so\.9/);
  });

  it('searches --cuda-lib-dir, LD_LIBRARY_PATH and CUDA_HOME, cuDNN parts before its front library', () => {
    const ort = tmp();
    touch(ort, [...ORT_CUDA_FILES]);
    const home = tmp();
    touch(join(home, 'lib64'), CUDA.slice(1));
    const cudnn = tmp();
    touch(cudnn, ['libcudnn.so.9', 'libcudnn_ops.so.9', 'libcudnn_graph.so.9', 'libcudnn_cnn.so.9']);
    const cudart = tmp();
    touch(cudart, ['libcudart.so.13']);
    const found = locateCudaLibraries({
      ortDir: ort,
      cudaLibDir: cudart,
      env: { CUDA_HOME: home, LD_LIBRARY_PATH: cudnn },
      probePython: false,
    });
    expect(found.ortCore).toBe(join(ort, 'libonnxruntime.so'));
    expect(found.ortProvider).toBe(join(ort, 'libonnxruntime_providers_cuda.so'));
    expect(found.cudart).toBe(join(cudart, 'libcudart.so.13'));
    expect(found.cudaLibs.map((p) => p.split('/').pop())).toEqual([
      ...CUDA,
      'libcudnn_graph.so.9',
      'libcudnn_cnn.so.9',
      'libcudnn_ops.so.9',
      'libcudnn.so.9',
    ]);
  });
});

describe('setupCuda', () => {
  it('unpacks the three ORT libraries from the two packages', () => {
    const src = tmp();
    const inner = 'package/Plugins/Linux/x64';
    const mk = (name: string, files: string[]) => {
      const root = tmp();
      touch(join(root, inner), files);
      execFileSync('tar', ['czf', join(src, name), '-C', root, 'package']);
    };
    mk('com.github.asus4.onnxruntime-0.4.9.tgz', ['libonnxruntime.so', 'libonnxruntime_providers_shared.so']);
    mk('com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz', ['libonnxruntime_providers_cuda.so']);
    const dest = join(tmp(), 'ort');
    const lines: string[] = [];
    expect(setupCuda({ dir: dest, packDir: src, log: (l) => lines.push(l) })).toBe(dest);
    for (const f of ORT_CUDA_FILES) expect(readFileSync(join(dest, f), 'utf8')).toBe(f);
    expect(lines.at(-1)).toMatch(/with the CUDA provider is in/);
  });

  it('says which library a package set lacks', () => {
    const src = tmp();
    const root = tmp();
    touch(join(root, 'package/Plugins/Linux/x64'), ['libonnxruntime.so']);
    execFileSync('tar', ['czf', join(src, 'com.github.asus4.onnxruntime-0.4.9.tgz'), '-C', root, 'package']);
    const dest = join(tmp(), 'ort');
    expect(() => setupCuda({ dir: dest, packDir: src })).toThrow(
      /libonnxruntime_providers_shared\.so is missing/,
    );
    expect(existsSync(join(dest, 'libonnxruntime_providers_cuda.so'))).toBe(false);
  });
});
