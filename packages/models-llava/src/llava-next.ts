import type { MultimodalSpec, ProcessedImage, RawConfig, VisionTowerSpec } from '@switchyard/core';
import { imageTokenId } from './llava.js';
import { llavaNextNumImageTokens, llavaNextProcess, selectBestResolution } from './llava-next-processor.js';

/**
 * LLaVA-NeXT's multimodal part. The encoder sees the base image and the anyres tiles; `arrange`
 * is transformers' pack_image_features: the tiles' features laid out as the image grid, the
 * padding cropped away (unpad), `image_newline` appended to every row, after the base features.
 */
export function llavaNextMultimodal(
  config: RawConfig,
  processors: { image: RawConfig; processor: RawConfig },
  newline: Float32Array,
  tower: VisionTowerSpec,
): MultimodalSpec {
  const token = imageTokenId(config);
  const vision = config.vision_config as RawConfig;
  const tile = vision.image_size as number;
  const side = tile / (vision.patch_size as number);
  const full = config.vision_feature_select_strategy === 'full';
  const visionAndStrategy = {
    ...vision,
    vision_feature_select_strategy: config.vision_feature_select_strategy,
  };
  const pinpoints = (config.image_grid_pinpoints ?? processors.image.image_grid_pinpoints) as [
    number,
    number,
  ][];
  return {
    tower,
    placeholderTokenId: token,
    addSpecialTokens: true,
    process: (image) => {
      const out = llavaNextProcess(image, processors.image);
      const [h, w] = [image.height, image.width];
      return {
        pixelValues: out.pixelValues,
        shape: out.shape.slice(1),
        imageSize: [h, w],
        numTokens: llavaNextNumImageTokens(
          h,
          w,
          { ...processors.processor, image_processor: processors.image },
          visionAndStrategy,
        ),
      };
    },
    expand: (image) => ({ ids: new Array(image.numTokens).fill(token), offset: 0 }),
    arrange: (features, shape, image) =>
      packImageFeatures(features, shape, image, { tile, side, full, pinpoints, newline }),
  };
}

interface Layout {
  tile: number;
  side: number;
  full: boolean;
  pinpoints: [number, number][];
  newline: Float32Array;
}

/** [tiles, L, D] features → [numTokens × D]: base image rows, then the unpadded grid with newlines. */
export function packImageFeatures(
  features: Float32Array,
  shape: number[],
  image: ProcessedImage,
  layout: Layout,
): Float32Array {
  const [, L, D] = shape;
  const skip = layout.full ? 1 : 0; // under 'full' the CLS feature leads each tile; the grid uses patches only
  const { side } = layout;
  const [bestH, bestW] = selectBestResolution(image.imageSize[0], image.imageSize[1], layout.pinpoints);
  const rows = bestH / layout.tile;
  const cols = bestW / layout.tile;
  const gridH = rows * side;
  const gridW = cols * side;
  const [top, bottom, left, right] = unpadBounds(gridH, gridW, image.imageSize);
  const out = new Float32Array(image.numTokens * D);
  out.set(features.subarray(0, L * D));
  let o = L * D;
  for (let y = top; y < bottom; y++) {
    for (let x = left; x < right; x++) {
      const t = 1 + Math.floor(y / side) * cols + Math.floor(x / side);
      const p = skip + (y % side) * side + (x % side);
      out.set(features.subarray((t * L + p) * D, (t * L + p + 1) * D), o);
      o += D;
    }
    out.set(layout.newline, o);
    o += D;
  }
  if (o !== out.length) {
    throw new Error(
      `LLaVA-NeXT packing made ${o / D} rows but the prompt has ${image.numTokens} image tokens`,
    );
  }
  return out;
}

/** transformers' unpad_image: the rows and columns of the padded grid that hold the image. */
function unpadBounds(
  h: number,
  w: number,
  [origH, origW]: [number, number],
): [number, number, number, number] {
  const round7 = (v: number) => Math.trunc(Math.round(v * 1e7) / 1e7);
  if (origW / origH > w / h) {
    const pad = Math.floor((h - round7(origH * (w / origW))) / 2);
    return [pad, h - pad, 0, w];
  }
  const pad = Math.floor((w - round7(origW * (h / origH))) / 2);
  return [0, h, pad, w - pad];
}
