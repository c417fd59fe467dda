import * as ort from 'onnxruntime-node';
import type { Checkpoint } from '../loader/checkpoint.js';
import type { VisionTowerSpec } from '../model.js';
import { VisionIO } from '../onnx/vit.js';
import type { VisionRunner } from '../vision-runner.js';
import { openSession } from './ort-session.js';
import { towerBatchSize, visionGraph } from './vision-input.js';

/**
 * Runs a model family's vision tower (fp32) in an ONNX Runtime session: preprocessed pixel values
 * in, projected image features (rows of the text model's hidden size) out. The session options
 * say where (the CPU, webgpu); the tower says what.
 */
export class OrtVisionRunner implements VisionRunner {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly tower: VisionTowerSpec,
  ) {}

  static async create(
    ckpt: Checkpoint,
    tower: VisionTowerSpec,
    provider: string,
    options: ort.InferenceSession.SessionOptions,
  ): Promise<OrtVisionRunner> {
    const graph = visionGraph(ckpt, tower);
    return new OrtVisionRunner(await openSession(graph, 'vision', provider, options), tower);
  }

  /**
   * Encodes images or tiles. `shape` is [N, C, H, W], or with more leading dims (e.g.
   * [1, tiles, C, H, W]) that are flattened into N; H × W must be the tower's image size. An
   * aborted `signal` rejects before the run starts.
   */
  async encode(
    pixels: Float32Array,
    shape: number[],
    options?: { signal?: AbortSignal },
  ): Promise<{ data: Float32Array; shape: number[] }> {
    options?.signal?.throwIfAborted();
    const { numChannels, tokensPerImage, hiddenSize } = this.tower;
    const [h, w] = this.tower.imageSize;
    const n = towerBatchSize(this.tower, pixels, shape);
    const outShape = [n, tokensPerImage, hiddenSize];
    if (n === 0) return { data: new Float32Array(0), shape: outShape };
    const input = new ort.Tensor('float32', pixels, [n, numChannels, h, w]);
    const out = await this.session.run({ [VisionIO.pixelValues]: input });
    return { data: out[VisionIO.imageFeatures].data as Float32Array, shape: outShape };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
