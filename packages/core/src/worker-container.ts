import type { DependencyContainer } from 'tsyringe';
import { createContainer, modelRegistry } from './container.js';
import { Checkpoint } from './loader/checkpoint.js';
import type { ModelSpec } from './model.js';

type Register = (container: DependencyContainer) => unknown;

/**
 * What a worker thread or process rebuilds of the engine's registries: a container holding what
 * `modules` register (each exports `register` or `registerBuiltins`), and the checkpoint at `model`
 * described by its architecture's definition there.
 */
export async function describeInWorker(
  model: string,
  modules: readonly string[],
): Promise<{ container: DependencyContainer; checkpoint: Checkpoint; spec: ModelSpec }> {
  const container = createContainer();
  for (const url of modules) {
    const mod = (await import(url)) as { register?: Register; registerBuiltins?: Register };
    const register = mod.register ?? mod.registerBuiltins;
    if (!register) throw new Error(`${url} exports neither register nor registerBuiltins`);
    register(container);
  }
  const checkpoint = Checkpoint.open(model);
  const spec = modelRegistry(container).get(checkpoint.architecture).describe(checkpoint);
  return { container, checkpoint, spec };
}
