import * as ort from 'onnxruntime-node';
import { SwitchyardError } from '../errors.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import {
  buildInternVLVisionGraph,
  buildLlavaVisionGraph,
  type ClipVisionSpec,
  clipVisionSpec,
  type InternVisionSpec,
  internVisionSpec,
  VisionIO,
} from '../onnx/vision-graph.js';
import { type CachedGraph, cachedGraph } from './graph-cache.js';
import { openCpuSession, openWebGpuSession } from './session.js';

/** Bump when the vision graphs change, so cached ones are rebuilt. */
const VISION_GRAPH_VERSION = 1;

export interface VisionEncoderOptions {
  /** 'webgpu' runs the tower (fp32) on the GPU; default 'cpu'. */
  device?: 'cpu' | 'webgpu';
  /** Intra-op threads for ORT (default: ORT's choice). */
  numThreads?: number;
}

/**
 * Runs a VLM's vision graph in fp32 on the CPU or through webgpu: preprocessed pixel values in, projected image
 * features (rows of the text model's hidden size) out.
 */
export class VisionEncoder {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly kind: 'llava' | 'internvl',
    readonly spec: ClipVisionSpec | InternVisionSpec,
  ) {}

  /** Feature rows per image (tile): the L of `[N, L, hidden]`. */
  get tokensPerImage(): number {
    return this.spec.tokensPerImage;
  }

  /** Width of the features (the text model's hidden size). */
  get hiddenSize(): number {
    return this.spec.textHiddenSize;
  }

  /** [height, width] the (tile) images must have. */
  get imageSize(): [number, number] {
    return this.spec.imageSize;
  }

  static async create(
    ckpt: Checkpoint,
    kind: 'llava' | 'internvl',
    options: VisionEncoderOptions = {},
  ): Promise<VisionEncoder> {
    const names = new Set(ckpt.tensors.keys());
    let spec: ClipVisionSpec | InternVisionSpec;
    let graph: CachedGraph;
    const key = (s: object) => ({ spec: s, ep: 'cpu', v: VISION_GRAPH_VERSION });
    if (kind === 'llava') {
      const s = clipVisionSpec(ckpt.config, names);
      graph = cachedGraph(ckpt, 'vision-llava', key(s), (g, w) => buildLlavaVisionGraph(g, s, w));
      spec = s;
    } else if (kind === 'internvl') {
      const s = internVisionSpec(ckpt.config, names);
      graph = cachedGraph(ckpt, 'vision-internvl', key(s), (g, w) => buildInternVLVisionGraph(g, s, w));
      spec = s;
    } else {
      throw new SwitchyardError(
        `unknown vision encoder '${String(kind)}'; known: llava, internvl`,
        'model_load',
      );
    }
    const session =
      options.device === 'webgpu'
        ? await openWebGpuSession(graph, 'vision')
        : await openCpuSession(graph, 'vision', ckpt.dir, options.numThreads);
    return new VisionEncoder(session, kind, spec);
  }

  /**
   * Encodes images or tiles. `shape` is [N, C, H, W], or with more leading dims (LLaVA-NeXT's
   * [1, tiles, C, H, W]) that are flattened into N; H × W must be the tower's image size.
   * Returns `[N, L, hidden]` features.
   */
  async encode(pixels: Float32Array, shape: number[]): Promise<{ data: Float32Array; shape: number[] }> {
    const { numChannels } = this.spec;
    const [h, w] = this.spec.imageSize;
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
    const outShape = [n, this.spec.tokensPerImage, this.spec.textHiddenSize];
    if (n === 0) return { data: new Float32Array(0), shape: outShape };
    const input = new ort.Tensor('float32', pixels, [n, numChannels, h, w]);
    const out = await this.session.run({ [VisionIO.pixelValues]: input });
    const features = out[VisionIO.imageFeatures];
    return { data: features.data as Float32Array, shape: outShape };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
