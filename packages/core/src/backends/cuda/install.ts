import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { SwitchyardError } from '../../errors.js';

/** The ORT release the binding's slot table and the provider packages are pinned to. */
export const ORT_CUDA_VERSION = '1.29.0';
/** npm packages (MIT; Microsoft's ORT 1.29.0 binaries repackaged) that `setupCuda` fetches. */
export const ORT_CUDA_PACKAGES = [
  'com.github.asus4.onnxruntime@0.4.9',
  'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9',
] as const;
/** The three ORT libraries, as they lie in the packages' `package/Plugins/Linux/x64/`. */
export const ORT_CUDA_FILES = [
  'libonnxruntime.so',
  'libonnxruntime_providers_shared.so',
  'libonnxruntime_providers_cuda.so',
] as const;
/** CUDA 13 runtime libraries the provider links against (in load order), and cuDNN 9 (loaded on demand). */
const CUDA_LIBS = ['libcudart.so.13', 'libcublasLt.so.13', 'libcublas.so.13', 'libcurand.so.10'] as const;
const CUDNN = 'libcudnn.so.9';

const FIX = 'switchyard setup cuda';

/** Where `setupCuda` puts the ORT libraries by default. */
export function defaultOrtCudaDir(): string {
  const cache = process.env.SWITCHYARD_CACHE_DIR ?? join(homedir(), '.cache', 'switchyard');
  return join(cache, 'ort-cuda', ORT_CUDA_VERSION);
}

export interface CudaLibraries {
  /** libonnxruntime.so (1.29, the core the provider was built with). */
  ortCore: string;
  /** libonnxruntime_providers_cuda.so. */
  ortProvider: string;
  /** Full paths of the CUDA runtime libraries, in load order (cuDNN's parts last). */
  cudaLibs: string[];
  /** libcudart's full path (the executor calls cudaMalloc/cudaMemcpy/cudaMemGetInfo through it). */
  cudart: string;
}

export interface LocateOptions {
  /** `--cuda-lib-dir`: a folder (or several, ':'-separated) searched first for the CUDA libraries. */
  cudaLibDir?: string;
  /** `SWITCHYARD_ORT_CUDA_DIR`-like override of the ORT folder. */
  ortDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Ask python3 for its site-packages (`nvidia/*\/lib`); default true. */
  probePython?: boolean;
}

/** Folders of a Python environment's CUDA wheels (`site-packages/nvidia/*\/lib`). */
function pythonNvidiaDirs(): string[] {
  const r = spawnSync(
    'python3',
    ['-c', 'import site,sys; print("\\n".join(site.getsitepackages()+[site.getusersitepackages()]))'],
    { encoding: 'utf8', timeout: 10_000 },
  );
  if (r.status !== 0 || !r.stdout) return [];
  const dirs: string[] = [];
  for (const sp of r.stdout.split('\n').filter(Boolean)) {
    const nv = join(sp, 'nvidia');
    if (!existsSync(nv)) continue;
    for (const pkg of readdirSync(nv)) {
      const lib = join(nv, pkg, 'lib');
      if (existsSync(lib)) dirs.push(lib);
    }
  }
  return dirs;
}

/**
 * Finds the ORT core + CUDA provider and the CUDA runtime libraries. ORT: `ortDir`,
 * `SWITCHYARD_ORT_CUDA_DIR`, then `setupCuda`'s default folder. CUDA: `cudaLibDir`,
 * `LD_LIBRARY_PATH`, `CUDA_HOME`/`CUDA_PATH` (lib64, lib), a Python environment's
 * `site-packages/nvidia/*\/lib`. A missing piece is one error naming it and the fix.
 */
export function locateCudaLibraries(options: LocateOptions = {}): CudaLibraries {
  const env = options.env ?? process.env;
  const ortDir = options.ortDir ?? env.SWITCHYARD_ORT_CUDA_DIR ?? defaultOrtCudaDir();
  for (const f of ORT_CUDA_FILES) {
    if (!existsSync(join(ortDir, f))) {
      throw new SwitchyardError(
        `the CUDA device needs ONNX Runtime ${ORT_CUDA_VERSION}'s ${f}, not found in ${ortDir}; run \`${FIX}\` (or point SWITCHYARD_ORT_CUDA_DIR at a folder holding ${ORT_CUDA_FILES.join(', ')})`,
        'model_load',
        'device',
      );
    }
  }
  const split = (s?: string) => (s ? s.split(delimiter).filter(Boolean) : []);
  const cudaHome = env.CUDA_HOME ?? env.CUDA_PATH;
  const candidates = [
    ...split(options.cudaLibDir),
    ...split(env.LD_LIBRARY_PATH),
    ...(cudaHome ? [join(cudaHome, 'lib64'), join(cudaHome, 'lib')] : []),
  ];
  const find = (name: string, dirs: string[]) => dirs.find((d) => existsSync(join(d, name)));
  let dirs = candidates;
  if ((options.probePython ?? true) && [...CUDA_LIBS, CUDNN].some((n) => !find(n, dirs))) {
    dirs = [...candidates, ...pythonNvidiaDirs()];
  }
  const cudaLibs: string[] = [];
  for (const name of CUDA_LIBS) {
    const dir = find(name, dirs);
    if (!dir) {
      throw new SwitchyardError(
        `the CUDA device needs ${name} (CUDA 13), not found in --cuda-lib-dir, LD_LIBRARY_PATH, CUDA_HOME or a Python environment's nvidia/*/lib; install the CUDA 13 runtime (e.g. \`pip install nvidia-cuda-runtime nvidia-cublas nvidia-curand\`) or pass --cuda-lib-dir`,
        'model_load',
        'device',
      );
    }
    cudaLibs.push(join(dir, name));
  }
  const cudnnDir = find(CUDNN, dirs);
  if (!cudnnDir) {
    throw new SwitchyardError(
      `the CUDA device needs ${CUDNN} (cuDNN 9 for CUDA 13), not found in --cuda-lib-dir, LD_LIBRARY_PATH, CUDA_HOME or a Python environment's nvidia/*/lib; install it (e.g. \`pip install nvidia-cudnn-cu13\`) or pass --cuda-lib-dir`,
      'model_load',
      'device',
    );
  }
  // cuDNN's parts first (libcudnn.so.9 opens them by name), the front library last.
  const parts = readdirSync(cudnnDir).filter((f) => /^libcudnn_.*\.so\.9$/.test(f));
  parts.sort((a, b) => (a.includes('graph') ? -1 : b.includes('graph') ? 1 : a.localeCompare(b)));
  cudaLibs.push(...parts.map((f) => join(cudnnDir, f)), join(cudnnDir, CUDNN));
  return {
    ortCore: join(ortDir, ORT_CUDA_FILES[0]),
    ortProvider: join(ortDir, ORT_CUDA_FILES[2]),
    cudaLibs,
    cudart: cudaLibs[0],
  };
}

export interface SetupCudaOptions {
  /** Target folder (default `defaultOrtCudaDir()`). */
  dir?: string;
  /** Folder already holding the two packages' .tgz files (skips `npm pack`). */
  packDir?: string;
  log?: (line: string) => void;
}

/**
 * `switchyard setup cuda`: fetches the ORT 1.29 core and CUDA provider from the npm registry
 * (`npm pack`, ~330 MB, not part of `npm ci`) and unpacks the three libraries into `dir`.
 * Returns the folder; the CUDA runtime libraries are not fetched (see `locateCudaLibraries`).
 */
export function setupCuda(options: SetupCudaOptions = {}): string {
  const dir = options.dir ?? defaultOrtCudaDir();
  const log = options.log ?? (() => {});
  const work = mkdtempSync(join(tmpdir(), 'switchyard-ort-cuda-'));
  try {
    const packDir = options.packDir ?? work;
    if (!options.packDir) {
      log(`fetching ${ORT_CUDA_PACKAGES.join(' and ')} from the npm registry (~330 MB)`);
      execFileSync('npm', ['pack', '--silent', ...ORT_CUDA_PACKAGES], {
        cwd: work,
        stdio: ['ignore', 'ignore', 'inherit'],
      });
    }
    const tgz = readdirSync(packDir).filter(
      (f) => f.startsWith('com.github.asus4.onnxruntime') && f.endsWith('.tgz'),
    );
    const inner = 'package/Plugins/Linux/x64';
    const out = join(work, 'x');
    mkdirSync(out, { recursive: true });
    for (const t of tgz) {
      // Each package holds a subset of the three; tar errors on names absent from an archive.
      const r = spawnSync(
        'tar',
        ['xzf', join(packDir, t), '-C', out, '--wildcards', `${inner}/libonnxruntime*.so`],
        {
          encoding: 'utf8',
        },
      );
      if (r.status !== 0) throw new Error(`cannot unpack ${t}: ${r.stderr.trim()}`);
    }
    mkdirSync(dir, { recursive: true });
    for (const f of ORT_CUDA_FILES) {
      const src = join(out, inner, f);
      if (!existsSync(src)) {
        throw new SwitchyardError(
          `${f} is missing from ${tgz.join(', ') || 'the fetched packages'}; expected ${ORT_CUDA_PACKAGES.join(' and ')}`,
          'internal',
        );
      }
      copyFileSync(src, join(dir, f));
    }
    log(`ONNX Runtime ${ORT_CUDA_VERSION} with the CUDA provider is in ${dir}`);
    return dir;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
