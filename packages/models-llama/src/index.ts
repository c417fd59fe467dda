import {
  type DependencyContainer,
  llamaFamilyDecoder,
  type ModelDefinition,
  modelRegistry,
} from '@switchyard/core';

/** LlamaForCausalLM: Llama 2, 3, 3.1 (llama3 rope scaling), Vicuna, and the demo text model. */
export const llama: ModelDefinition = {
  architectures: ['LlamaForCausalLM'],
  describe: (ckpt) => ({ architecture: ckpt.architecture, decoder: llamaFamilyDecoder(ckpt.textConfig) }),
};

export function register(container: DependencyContainer): void {
  for (const arch of llama.architectures) modelRegistry(container).register(arch, llama);
}
