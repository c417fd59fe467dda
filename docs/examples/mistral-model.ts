/**
 * A model family registered from user code: Mistral (`MistralForCausalLM`), a Llama-family
 * decoder with sliding-window attention — each token attends only to the last `sliding_window`
 * positions, itself included, as transformers' Mistral does. The shared decoder recipe reads the
 * config like any Llama; the one Mistral feature is the window, which the backends' attention ops
 * honour (`DecoderSpec.slidingWindow`). Nothing in Switchyard's packages names Mistral.
 *
 *   const container = registerBuiltins(createContainer());
 *   register(container);
 *   const engine = await createEngine({ model: 'path/to/mistral', container });
 */
import {
  type Checkpoint,
  type DependencyContainer,
  llamaFamilyDecoder,
  type ModelDefinition,
  type ModelSpec,
  modelRegistry,
  SwitchyardError,
} from '@switchyard/core';

/** config.json's `sliding_window`: a positive integer, or null/absent for full attention. */
function slidingWindow(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new SwitchyardError(
      `config.json sliding_window must be a positive integer or null, got ${JSON.stringify(value)}`,
      'model_load',
    );
  }
  return value;
}

export const mistral: ModelDefinition = {
  architectures: ['MistralForCausalLM'],
  describe(ckpt: Checkpoint): ModelSpec {
    const config = ckpt.textConfig;
    return {
      architecture: ckpt.architecture,
      decoder: llamaFamilyDecoder(config, { slidingWindow: slidingWindow(config.sliding_window) }),
    };
  },
};

export function register(container: DependencyContainer): void {
  for (const arch of mistral.architectures) modelRegistry(container).register(arch, mistral);
}
