import { register as registerPaged } from '@switchyard/attention-paged';
import { register as registerRadix } from '@switchyard/attention-radix';
import { createContainer, type DependencyContainer, Engine, type EngineOptions } from '@switchyard/core';
import { register as registerInternvl } from '@switchyard/models-internvl';
import { register as registerLlama } from '@switchyard/models-llama';
import { register as registerLlava } from '@switchyard/models-llava';
import { register as registerQwen } from '@switchyard/models-qwen';
import { register as registerContinuous } from '@switchyard/scheduler-continuous';
import { register as registerFcfs } from '@switchyard/scheduler-fcfs';

/** Adds every scheduler, KV cache manager and model that ships with Switchyard to a container. */
export function registerBuiltins(container: DependencyContainer): DependencyContainer {
  for (const register of [
    registerFcfs,
    registerContinuous,
    registerPaged,
    registerRadix,
    registerLlama,
    registerQwen,
    registerLlava,
    registerInternvl,
  ]) {
    register(container);
  }
  return container;
}

/**
 * Builds an engine from named parts. Pass `container` to use parts of your own registered beside
 * (or instead of) the built-in ones; by default a container with the built-ins is made, and a VLM's
 * images are decoded on worker threads that register the built-ins too (with your own container,
 * name your registering modules in `images.workers` to get the same).
 */
export function createEngine(options: EngineOptions & { container?: DependencyContainer }): Promise<Engine> {
  const { container, ...rest } = options;
  if (!container && rest.images?.workers === undefined) {
    // Images are decoded and preprocessed on worker threads, which register the same built-ins.
    rest.images = { ...rest.images, workers: { model: rest.model, modules: [builtinsModule()] } };
  }
  const isolated = (rest.executorIsolation ?? (rest.executorThread ? 'thread' : 'none')) !== 'none';
  if (!container && isolated && !rest.executorThread?.modules?.length)
    rest.executorThread = { ...rest.executorThread, modules: [builtinsModule()] };
  return Engine.create(rest, container ?? registerBuiltins(createContainer()));
}

/** This module, for threads to import: the build's copy when running from sources (tests). */
export function builtinsModule(): string {
  const here = import.meta.url;
  return here.endsWith('.ts') ? new URL('../dist/create-engine.js', here).href : here;
}
