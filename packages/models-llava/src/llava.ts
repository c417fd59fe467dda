import { type MultimodalSpec, type RawConfig, SwitchyardError, type VisionTowerSpec } from '@switchyard/core';
import { clipProcess } from './clip-processor.js';

/** Image token id, from `image_token_index` (4.x) or `image_token_id` (5.x). */
export function imageTokenId(config: RawConfig): number {
  const id = config.image_token_index ?? config.image_token_id;
  if (typeof id !== 'number')
    throw new SwitchyardError('config.json has no image_token_index / image_token_id', 'model_load');
  return id;
}

/** Features per image of the CLIP tower: one per patch, plus CLS under the 'full' strategy. */
export function clipFeatures(config: RawConfig): number {
  const vision = config.vision_config as RawConfig;
  const side = (vision.image_size as number) / (vision.patch_size as number);
  return side * side + (config.vision_feature_select_strategy === 'full' ? 1 : 0);
}

export function llavaMultimodal(
  config: RawConfig,
  processors: { image: RawConfig },
  tower: VisionTowerSpec,
): MultimodalSpec {
  const token = imageTokenId(config);
  const numTokens = clipFeatures(config);
  return {
    tower,
    placeholderTokenId: token,
    addSpecialTokens: true,
    process: (image) => {
      const out = clipProcess(image, processors.image);
      return {
        pixelValues: out.pixelValues,
        shape: out.shape,
        imageSize: [image.height, image.width],
        numTokens,
      };
    },
    expand: (image) => ({ ids: new Array(image.numTokens).fill(token), offset: 0 }),
    arrange: (features) => features,
  };
}
