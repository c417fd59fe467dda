import type { Checkpoint } from './loader/checkpoint.js';

export interface RopeSpec {
  theta: number;
  /** 'default' or 'llama3' (others are rejected at load with a clear error). */
  type: 'default' | 'llama3';
  factor?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
  /** Fraction of head_dim that is rotated (1 for all models here). */
  partialRotaryFactor?: number;
}

/**
 * The recipe of a Llama-family decoder: everything the shared graph builder needs. Model packages
 * fill it from config.json; nothing model-specific lives in the builder.
 */
export interface DecoderSpec {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  rmsNormEps: number;
  rope: RopeSpec;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2). */
  qkvBias: boolean;
  /** o_proj carries a bias. */
  oBias: boolean;
  /** Per-head RMSNorm of q and k before RoPE (Qwen3). */
  qkNorm: boolean;
  /** MLP projections carry a bias. */
  mlpBias: boolean;
  hiddenAct: 'silu';
  /** Weight-name prefix of the decoder, e.g. 'model.' or 'model.language_model.'. */
  weightPrefix: string;
  /** Name of the output head weight ('lm_head.weight'); ignored when tied. */
  lmHeadName: string;
}

/** What a model package makes of a checkpoint. */
export interface ModelSpec {
  architecture: string;
  decoder: DecoderSpec;
}

/**
 * A model package's registration: the architectures it serves (config.json `architectures[0]`) and
 * how it reads a checkpoint of them.
 */
export interface ModelDefinition {
  readonly architectures: readonly string[];
  describe(checkpoint: Checkpoint): ModelSpec;
}
