import {
  type DependencyContainer,
  llamaFamilyDecoder,
  type ModelDefinition,
  modelRegistry,
} from '@switchyard/core';

/** Qwen2ForCausalLM (Qwen2, Qwen2.5): q/k/v projections carry a bias, o_proj does not. */
export const qwen2: ModelDefinition = {
  architectures: ['Qwen2ForCausalLM'],
  describe: (ckpt) => ({
    architecture: ckpt.architecture,
    decoder: llamaFamilyDecoder(ckpt.textConfig, { qkvBias: true, oBias: false }),
  }),
};

/** Qwen3ForCausalLM: per-head RMSNorm of q and k before RoPE; head_dim independent of hidden size. */
export const qwen3: ModelDefinition = {
  architectures: ['Qwen3ForCausalLM'],
  describe: (ckpt) => ({
    architecture: ckpt.architecture,
    decoder: llamaFamilyDecoder(ckpt.textConfig, { qkNorm: true }),
  }),
};

export function register(container: DependencyContainer): void {
  for (const def of [qwen2, qwen3])
    for (const arch of def.architectures) modelRegistry(container).register(arch, def);
}
