import koffi from 'koffi';
import { SwitchyardError } from '../../errors.js';
import { CudaRuntime } from './cuda-runtime.js';
import { type CudaLibraries, locateCudaLibraries } from './install.js';
import { OrtRuntime, type Ptr } from './ort-capi.js';

/** The CUDA provider of one ORT runtime: what the decoder executor and the vision runner open. */
export interface CudaProvider {
  libs: CudaLibraries;
  ort: OrtRuntime;
  cuda: CudaRuntime;
  /** The CUDA provider's device (its OrtEpDevice). */
  device: Ptr;
  /** Releases the runtime's ORT resources and frees its device memory. */
  close(): void;
}

/** Libraries preloaded by full path, so the provider's dependencies resolve by soname. */
const preloaded = new Set<string>();
function preload(paths: readonly string[]): void {
  let pending = paths.filter((p) => !preloaded.has(p));
  // cuDNN's parts depend on each other: retry until a pass loads nothing new.
  for (let pass = 0; pending.length > 0 && pass < 4; pass++) {
    const failed: string[] = [];
    for (const p of pending) {
      try {
        koffi.load(p);
        preloaded.add(p);
      } catch {
        failed.push(p);
      }
    }
    if (failed.length === pending.length) break;
    pending = failed;
  }
}

const CUDA_EP = 'CUDAExecutionProvider';

/**
 * Loads the CUDA libraries and ORT, registers the CUDA provider library in ORT's (process-wide)
 * environment and finds its device. Several runtimes in one process — the decoder's, a vision
 * tower's, one on the executor thread — share the registration: the first registers it, the
 * others find its device already listed, and none unregisters it (ORT unloads it with the env).
 */
export function openCudaProvider(
  options: { cudaLibDir?: string; logLevel?: number; libraries?: CudaLibraries } = {},
): CudaProvider {
  const libs = options.libraries ?? locateCudaLibraries({ cudaLibDir: options.cudaLibDir });
  preload(libs.cudaLibs);
  let ort: OrtRuntime | undefined;
  let cuda: CudaRuntime | undefined;
  const close = () => {
    ort?.close();
    cuda?.freeAll();
  };
  try {
    ort = new OrtRuntime(libs.ortCore, { logLevel: options.logLevel ?? 3 });
    cuda = new CudaRuntime(libs.cudart);
    if (!ort.epDevices().some((d) => d.epName === CUDA_EP)) {
      ort.registerProviderLibrary('CUDA', libs.ortProvider, { keep: true });
    }
    const device = ort.epDevices().find((d) => d.epName === CUDA_EP);
    if (!device) throw new Error('the CUDA provider found no GPU (is the NVIDIA driver loaded?)');
    return { libs, ort, cuda, device: device.handle, close };
  } catch (e) {
    close();
    throw new SwitchyardError(
      `the cuda execution provider could not start: ${(e as Error).message}`,
      'model_load',
    );
  }
}
