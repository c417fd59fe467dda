import 'reflect-metadata';
import { type DependencyContainer, container as rootContainer } from 'tsyringe';
import type { KvCacheManagerFactory } from './kv-cache.js';
import type { ModelDefinition } from './model.js';
import { Registry } from './registry.js';
import type { SchedulerFactory } from './scheduler.js';

/** DI tokens. Packages add their parts to the registries under these tokens by name. */
export const TOKENS = {
  schedulers: Symbol.for('switchyard.schedulers'),
  kvCacheManagers: Symbol.for('switchyard.kvCacheManagers'),
  models: Symbol.for('switchyard.models'),
} as const;

/** A package's entry point: adds its parts to the container's registries. */
export type RegisterFn = (container: DependencyContainer) => void;

/** A child container with empty registries; call each package's `register(container)` on it. */
export function createContainer(parent: DependencyContainer = rootContainer): DependencyContainer {
  const c = parent.createChildContainer();
  c.registerInstance(TOKENS.schedulers, new Registry<SchedulerFactory>('scheduler'));
  c.registerInstance(TOKENS.kvCacheManagers, new Registry<KvCacheManagerFactory>('KV cache manager'));
  c.registerInstance(TOKENS.models, new Registry<ModelDefinition>('model architecture'));
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
