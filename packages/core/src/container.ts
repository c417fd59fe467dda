import 'reflect-metadata';
import { type DependencyContainer, container as rootContainer } from 'tsyringe';
import { registerCoreBackends } from './backends/index.js';
import type { Backend } from './contracts/backend.js';
import type { KvCacheManagerFactory } from './kv-cache.js';
import type { ModelDefinition } from './model.js';
import { Registry } from './registry.js';
import type { SchedulerFactory } from './scheduler.js';

/** DI tokens. Packages add their parts to the registries under these tokens by name. */
export const TOKENS = {
  schedulers: Symbol.for('switchyard.schedulers'),
  kvCacheManagers: Symbol.for('switchyard.kvCacheManagers'),
  models: Symbol.for('switchyard.models'),
  backends: Symbol.for('switchyard.backends'),
} as const;

/** A package's entry point: adds its parts to the container's registries. */
export type RegisterFn = (container: DependencyContainer) => void;

/**
 * A child container with empty registries except for the backends core ships ('cpu', 'webgpu');
 * call each package's `register(container)` on it.
 */
export function createContainer(parent: DependencyContainer = rootContainer): DependencyContainer {
  const c = parent.createChildContainer();
  c.registerInstance(TOKENS.backends, new Registry<Backend>('backend'));
  c.registerInstance(TOKENS.schedulers, new Registry<SchedulerFactory>('scheduler'));
  c.registerInstance(TOKENS.kvCacheManagers, new Registry<KvCacheManagerFactory>('KV cache manager'));
  c.registerInstance(TOKENS.models, new Registry<ModelDefinition>('model architecture'));
  registerCoreBackends(c);
  return c;
}

export function schedulerRegistry(c: DependencyContainer): Registry<SchedulerFactory> {
  return c.resolve(TOKENS.schedulers);
}

export function kvCacheRegistry(c: DependencyContainer): Registry<KvCacheManagerFactory> {
  return c.resolve(TOKENS.kvCacheManagers);
}

export function modelRegistry(c: DependencyContainer): Registry<ModelDefinition> {
  return c.resolve(TOKENS.models);
}

/** Backends by name (`EngineOptions.device`); see `Backend`. */
export function backendRegistry(c: DependencyContainer): Registry<Backend> {
  return c.resolve(TOKENS.backends);
}
