import * as ort from 'onnxruntime-node';
import { SwitchyardError } from '../errors.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import type { VisionTowerSpec } from '../model.js';
import { cachedGraph } from '../onnx/graph-cache.js';
import { VisionIO } from '../onnx/vit.js';
import type { VisionRunner } from '../vision-runner.js';
import { openSession } from './ort-session.js';

/** Bump when the vision graphs change, so cached ones are rebuilt. */
const VISION_GRAPH_VERSION = 1;

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
    const key = { spec: tower.key, ep: 'cpu', v: VISION_GRAPH_VERSION };
    const graph = cachedGraph(ckpt, `vision-${tower.name}`, key, (g, w) => tower.build(g, w));
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
    const tail = shape.slice(-3);
    if (shape.length < 4 || tail[0] !== numChannels || tail[1] !== h || tail[2] !== w) {
      throw new SwitchyardError(
        `pixel values of shape [${shape.join(', ')}] do not fit the vision tower, which takes [N, ${numChannels}, ${h}, ${w}]`,
        'invalid_request',
      );
    }
    const n = shape.slice(0, -3).reduce((a, b) => a * b, 1);
    if (pixels.length !== n * numChannels * h * w) {
      throw new SwitchyardError(
        `pixel values hold ${pixels.length} numbers but shape [${shape.join(', ')}] needs ${n * numChannels * h * w}`,
        'invalid_request',
      );
    }
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
