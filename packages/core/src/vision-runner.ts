/**
 * Runs a vision-language model's vision tower (and projector) on some backend: preprocessed pixel
 * values in, projected image features (rows of the text model's hidden size) out.
 */
export interface VisionRunner {
  /**
   * Encodes images or tiles of shape [N, C, H, W] (more leading dims are flattened into N).
   * Returns `[N, L, hidden]` features. Throws `SwitchyardError` when the shape does not fit.
   * `signal`: the caller no longer wants the result; work not yet started is dropped and the call
   * rejects with the signal's reason (a tower run already under way finishes, unread).
   */
  encode(
    pixels: Float32Array,
    shape: number[],
    options?: { signal?: AbortSignal },
  ): Promise<{ data: Float32Array; shape: number[] }>;
  dispose(): Promise<void>;
}
