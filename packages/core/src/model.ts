import type { Checkpoint } from './loader/checkpoint.js';
import type { GraphBuilder } from './onnx/graph-builder.js';
import type { WeightRef } from './onnx/weights.js';

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
  /**
   * The graph takes image embeddings (`image_embeds`, `embed_index`) that replace the token
   * embeddings at image placeholder positions (VLMs).
   */
  imageEmbeds?: boolean;
  /**
   * Sliding-window attention (Mistral's `sliding_window`): a token attends only to the last
   * `slidingWindow` positions, itself included. Undefined = full causal attention.
   */
  slidingWindow?: number;
}

/** One image, preprocessed the way the checkpoint's Hugging Face processor does it. */
export interface ProcessedImage {
  pixelValues: Float32Array;
  /** The tensor shape fed to the vision encoder: [tiles, 3, H, W]. */
  shape: number[];
  /** Original [height, width] (LLaVA-NeXT's unpadding needs it). */
  imageSize: [number, number];
  /** Placeholder tokens the image becomes in the prompt (= rows of its embeddings). */
  numTokens: number;
}

/**
 * What a vision-language model adds: its image processor, how an image's placeholder in the
 * rendered prompt expands, and which vision graph encodes it.
 */
export interface MultimodalSpec {
  /** The vision tower (and projector) that encodes a processed image; a backend runs it. */
  tower: VisionTowerSpec;
  /** The token the chat template (or a raw prompt) carries once per image. */
  placeholderTokenId: number;
  /** Whether the processor tokenizes the rendered prompt with special tokens (BOS). */
  addSpecialTokens: boolean;
  process(image: RgbImageLike): ProcessedImage;
  /** The token ids one image expands to, and where among them its embeddings go. */
  expand(image: ProcessedImage): { ids: number[]; offset: number };
  /** Turns the encoder's output for one image ([tiles, tokens, hidden]) into [numTokens × hidden]. */
  arrange(features: Float32Array, shape: number[], image: ProcessedImage): Float32Array;
}

/**
 * A model family's vision tower (and projector), as a graph any backend can build and run:
 * `VisionIO.pixelValues` [N, C, H, W] (fp32) in, `VisionIO.imageFeatures` [N, L, hidden] (fp32) out.
 */
export interface VisionTowerSpec {
  /** Names the graph in the graph cache (e.g. the family's name). */
  readonly name: string;
  /** Everything the graph depends on besides the weights (enters the cache key). */
  readonly key: unknown;
  readonly numChannels: number;
  /** [height, width] every image (tile) must have. */
  readonly imageSize: [number, number];
  /** Feature rows per image (tile): the L of [N, L, hidden]. */
  readonly tokensPerImage: number;
  /** Width of the features (the text model's hidden size). */
  readonly hiddenSize: number;
  /** Writes the graph with `w` resolving checkpoint weight names to initializers. */
  build(g: GraphBuilder, w: WeightRef): void;
}

/** An 8-bit RGB image (`RgbImage` of the image module). */
export interface RgbImageLike {
  width: number;
  height: number;
  data: Uint8Array;
}

/** What a model package makes of a checkpoint. */
export interface ModelSpec {
  architecture: string;
  decoder: DecoderSpec;
  multimodal?: MultimodalSpec;
}

/**
 * A model package's registration: the architectures it serves (config.json `architectures[0]`) and
 * how it reads a checkpoint of them.
 */
export interface ModelDefinition {
  readonly architectures: readonly string[];
  describe(checkpoint: Checkpoint): ModelSpec;
}
