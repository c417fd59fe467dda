/**
 * Runs a vision-language model's vision tower (and projector) on some backend: preprocessed pixel
 * values in, projected image features (rows of the text model's hidden size) out.
 */
export interface VisionRunner {
  /**
   * Encodes images or tiles of shape [N, C, H, W] (more leading dims are flattened into N).
   * Returns `[N, L, hidden]` features. Throws `SwitchyardError` when the shape does not fit.
   */
  encode(pixels: Float32Array, shape: number[]): Promise<{ data: Float32Array; shape: number[] }>;
  dispose(): Promise<void>;
}
