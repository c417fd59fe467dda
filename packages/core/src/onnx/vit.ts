/**
 * Input and output names of the vision graphs: `pixel_values` [N, C, H, W] (N tiles or images, at
 * the tower's fixed image size) → `image_features` [N, L, textHidden] (rows ready to replace the
 * image placeholder embeddings of the text decoder).
 */
export const VisionIO = {
  pixelValues: 'pixel_values',
  imageFeatures: 'image_features',
} as const;
