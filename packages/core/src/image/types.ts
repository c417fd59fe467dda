/** A decoded 8-bit RGB image: `data` is `height` rows of `width` RGB triplets, interleaved. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** What a processor hands the vision encoder for one image. */
export interface ProcessorOutput {
  /** Float32 pixel values, row-major in `shape`. */
  pixelValues: Float32Array;
  /** Exactly the shape of transformers' `pixel_values` for this single image. */
  shape: number[];
  /** The original [height, width] (LLaVA-NeXT's `image_sizes`). */
  imageSize?: [number, number];
  /** Tiles the image became (LLaVA-NeXT: base + grid; InternVL: grid + thumbnail). */
  numTiles?: number;
}
