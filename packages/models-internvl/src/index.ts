import {
  type Checkpoint,
  type DependencyContainer,
  imageProcessorConfig,
  type ModelDefinition,
  type MultimodalSpec,
  modelRegistry,
  type RawConfig,
  SwitchyardError,
  vlmTextDecoder,
} from '@switchyard/core';
import { internVitTower } from './intern-vit-tower.js';
import { internvlProcess } from './internvl-processor.js';

/**
 * InternVL (HF-native InternVLForConditionalGeneration): dynamic tiles plus a thumbnail, each
 * `image_seq_length` tokens after pixel shuffle; the prompt's `<IMG_CONTEXT>` becomes
 * `<img>` + `<IMG_CONTEXT>` × N + `</img>`.
 */
export const internvl: ModelDefinition = {
  architectures: ['InternVLForConditionalGeneration'],
  describe: (ckpt: Checkpoint) => ({
    architecture: ckpt.architecture,
    decoder: vlmTextDecoder(ckpt),
    multimodal: internvlMultimodal(ckpt, imageProcessorConfig(ckpt)),
  }),
};

function internvlMultimodal(
  ckpt: Checkpoint,
  processors: { image: RawConfig; processor: RawConfig },
): MultimodalSpec {
  const config = ckpt.config;
  const context = config.image_token_id ?? ckpt.tokenizer.tokenToId('<IMG_CONTEXT>');
  const start = ckpt.tokenizer.tokenToId('<img>');
  const end = ckpt.tokenizer.tokenToId('</img>');
  if (typeof context !== 'number' || start === undefined || end === undefined) {
    throw new SwitchyardError('the tokenizer lacks <img>, </img> or <IMG_CONTEXT>', 'model_load');
  }
  const perTile = (processors.processor.image_seq_length ?? config.image_seq_length) as number;
  return {
    tower: internVitTower(ckpt),
    placeholderTokenId: context,
    addSpecialTokens: true,
    process: (image) => {
      const out = internvlProcess(image, processors.image);
      return {
        pixelValues: out.pixelValues,
        shape: out.shape,
        imageSize: [image.height, image.width],
        numTokens: out.shape[0] * perTile,
      };
    },
    expand: (image) => ({ ids: [start, ...new Array(image.numTokens).fill(context), end], offset: 1 }),
    arrange: (features) => features,
  };
}

export function register(container: DependencyContainer): void {
  for (const arch of internvl.architectures) modelRegistry(container).register(arch, internvl);
}

export * from './intern-vit-graph.js';
export * from './intern-vit-tower.js';
export * from './internvl-processor.js';
