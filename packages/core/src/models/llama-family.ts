import { SwitchyardError } from '../errors.js';
import { configNumber, type RawConfig, readRope } from '../loader/checkpoint.js';
import type { DecoderSpec } from '../model.js';

/**
 * Reads the decoder recipe shared by Llama, Qwen2 and Qwen3 from a (text) config; the model
 * package states what differs (`overrides`).
 */
export function llamaFamilyDecoder(config: RawConfig, overrides: Partial<DecoderSpec> = {}): DecoderSpec {
  const hiddenSize = configNumber(config, 'hidden_size');
  const numHeads = configNumber(config, 'num_attention_heads');
  const numKvHeads = configNumber(config, 'num_key_value_heads', numHeads);
  const act = (config.hidden_act ?? 'silu') as string;
  if (act !== 'silu')
    throw new SwitchyardError(`hidden_act '${act}' is not supported; supported: silu`, 'model_load');
  if (numHeads % numKvHeads !== 0) {
    throw new SwitchyardError(
      `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`,
      'model_load',
    );
  }
  const rope = readRope(config);
  if ((rope.partialRotaryFactor ?? 1) !== 1) {
    throw new SwitchyardError('partial_rotary_factor other than 1 is not supported', 'model_load');
  }
  return {
    hiddenSize,
    numLayers: configNumber(config, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim: configNumber(config, 'head_dim', hiddenSize / numHeads),
    intermediateSize: configNumber(config, 'intermediate_size'),
    vocabSize: configNumber(config, 'vocab_size'),
    rmsNormEps: configNumber(config, 'rms_norm_eps', 1e-6),
    rope,
    maxPositionEmbeddings: configNumber(config, 'max_position_embeddings', 2048),
    tieWordEmbeddings: Boolean(config.tie_word_embeddings ?? false),
    qkvBias: Boolean(config.attention_bias ?? false),
    oBias: Boolean(config.attention_bias ?? false),
    qkNorm: false,
    mlpBias: Boolean(config.mlp_bias ?? false),
    hiddenAct: 'silu',
    weightPrefix: 'model.',
    lmHeadName: 'lm_head.weight',
    ...overrides,
  };
}
