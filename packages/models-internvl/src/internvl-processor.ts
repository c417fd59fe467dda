import {
  cropImage,
  type ImageProcessorConfig,
  type ProcessOptions,
  type ProcessorOutput,
  processingSettings,
  processorConfigError,
  type RgbImage,
  readSizeSpec,
  resizeImage,
  writePixelValues,
} from '@switchyard/core';

/** GotOcr2ImageProcessor's default mean and std (OpenAI CLIP's). */
const CLIP_DEFAULTS = {
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
};

/**
 * The InternVL / GotOcr2 tiling grid [columns, rows]: among the grids of `minTiles`…`maxTiles`
 * tiles (by tile count), the one whose aspect ratio is closest to the image's; on a tie the
 * larger grid wins while the image's area exceeds half the grid's pixel area.
 */
export function optimalTiledCanvas(
  height: number,
  width: number,
  tileHeight: number,
  tileWidth: number,
  minTiles: number,
  maxTiles: number,
): [number, number] {
  const grids: [number, number][] = [];
  for (let w = 1; w <= maxTiles; w++) {
    for (let h = 1; h <= maxTiles; h++) if (w * h <= maxTiles && w * h >= minTiles) grids.push([w, h]);
  }
  grids.sort((a, b) => a[0] * a[1] - b[0] * b[1]); // stable, like Python's sorted
  const aspect = width / height;
  const area = width * height;
  let bestDiff = Number.POSITIVE_INFINITY;
  let best: [number, number] = [1, 1];
  for (const g of grids) {
    const diff = Math.abs(aspect - g[0] / g[1]);
    if (diff < bestDiff) {
      bestDiff = diff;
      best = g;
    } else if (diff === bestDiff && area > 0.5 * tileHeight * tileWidth * g[0] * g[1]) {
      best = g;
    }
  }
  return best;
}

/**
 * GotOcr2ImageProcessor as InternVL uses it (`crop_to_patches`): resize the image to the best
 * grid of `size` tiles (InternVL's dynamic preprocess), cut it row by row, and append a
 * thumbnail (the whole image at tile size) when there is more than one tile. Without
 * `crop_to_patches` the image is just resized to `size`. Returns `[tiles, 3, H, W]`.
 */
export function internvlProcess(
  img: RgbImage,
  config: ImageProcessorConfig,
  opts: ProcessOptions = {},
): ProcessorOutput {
  const c = processingSettings(config, opts, CLIP_DEFAULTS);
  const size = readSizeSpec(config.size ?? { height: 384, width: 384 }, true, 'size')!;
  if (!size.height || !size.width)
    throw processorConfigError('size must give height and width for InternVL tiles');
  const th = size.height;
  const tw = size.width;
  const minPatches = Number(config.min_patches ?? 1);
  const maxPatches = Number(config.max_patches ?? 12);
  const resize = (w: number, h: number) => resizeImage(img, w, h, { filter: c.filter, kernel: c.kernel });

  let tiles: RgbImage[];
  if (config.crop_to_patches === true && maxPatches > 1) {
    const [cols, rows] = optimalTiledCanvas(img.height, img.width, th, tw, minPatches, maxPatches);
    const grid = resize(tw * cols, th * rows);
    tiles = [];
    for (let i = 0; i < cols * rows; i++)
      tiles.push(cropImage(grid, (i % cols) * tw, Math.floor(i / cols) * th, tw, th));
    if (tiles.length !== 1) tiles.push(resize(tw, th));
  } else {
    tiles = [c.doResize ? resize(tw, th) : img];
  }
  const { width: W, height: H } = tiles[0];
  const plane = 3 * W * H;
  const pixelValues = new Float32Array(tiles.length * plane);
  for (let i = 0; i < tiles.length; i++) writePixelValues(tiles[i], c, pixelValues, i * plane);
  return {
    pixelValues,
    shape: [tiles.length, 3, H, W],
    imageSize: [img.height, img.width],
    numTiles: tiles.length,
  };
}
