import type { DependencyContainer } from 'tsyringe';
import { backendRegistry } from '../container.js';
import { cpuBackend } from './cpu/cpu-backend.js';
import { cudaBackend } from './cuda/cuda-backend.js';
import { webgpuBackend } from './webgpu/webgpu-backend.js';

/** Adds the backends core ships ('cpu', 'webgpu', 'cuda') to a container's backend registry. */
export function registerCoreBackends(container: DependencyContainer): void {
  for (const backend of [cpuBackend, webgpuBackend, cudaBackend])
    backendRegistry(container).register(backend.name, backend);
}
