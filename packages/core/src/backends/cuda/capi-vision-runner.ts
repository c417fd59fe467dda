import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Checkpoint } from '../../loader/checkpoint.js';
import type { VisionTowerSpec } from '../../model.js';
import { VisionIO } from '../../onnx/vit.js';
import type { VisionRunner } from '../../vision-runner.js';
import { towerBatchSize, visionGraph } from '../vision-input.js';
import { type GraphOptimization, HostBuffer, type OrtRuntime, type Ptr } from './ort-capi.js';

/**
 * A model family's vision tower (fp32, projector included) in a session of the ORT C API binding:
 * on the CUDA provider when `appendProvider` attaches it (the cuda backend), on ORT's CPU provider
 * otherwise (how CI tests it). Pixel values go in from, and features come back to, host buffers at
 * fixed addresses through IO binding (ORT copies them to and from the device). All images of one
 * `encode` run as one batch; `dispose` releases the session and calls `onDispose`.
 */
export class CapiVisionRunner implements VisionRunner {
  private readonly binding: Ptr;
  private readonly cpuInfo: Ptr;
  private input = new HostBuffer(0);
  private output = new HostBuffer(0);
  private disposed = false;

  private constructor(
    private readonly ort: OrtRuntime,
    private readonly session: Ptr,
    readonly tower: VisionTowerSpec,
    private readonly onDispose: () => void,
  ) {
    this.binding = ort.ioBinding(session);
    this.cpuInfo = ort.cpuMemoryInfo();
  }

  static open(
    ort: OrtRuntime,
    ckpt: Checkpoint,
    tower: VisionTowerSpec,
    {
      appendProvider,
      onDispose = () => {},
      optimization = 'all',
    }: {
      appendProvider?: (so: Ptr) => void;
      onDispose?: () => void;
      /** ORT's graph optimization level for the tower's session. */
      optimization?: keyof typeof GraphOptimization;
    } = {},
  ): CapiVisionRunner {
    const graph = visionGraph(ckpt, tower);
    const so = ort.sessionOptions({
      optimization,
      config: {
        'session.model_external_initializers_file_folder_path':
          graph.externalDataFolder ?? dirname(graph.path),
      },
    });
    try {
      appendProvider?.(so);
      const session = ort.session(new Uint8Array(readFileSync(graph.path)), so);
      return new CapiVisionRunner(ort, session, tower, onDispose);
    } finally {
      ort.release(so);
    }
  }

  async encode(pixels: Float32Array, shape: number[]): Promise<{ data: Float32Array; shape: number[] }> {
    const { numChannels, tokensPerImage, hiddenSize } = this.tower;
    const [h, w] = this.tower.imageSize;
    const n = towerBatchSize(this.tower, pixels, shape);
    const outShape = [n, tokensPerImage, hiddenSize];
    if (n === 0) return { data: new Float32Array(0), shape: outShape };
    const outCount = n * tokensPerImage * hiddenSize;
    this.input = grown(this.input, pixels.byteLength);
    this.output = grown(this.output, outCount * 4);
    new Float32Array(this.input.bytes, 0, pixels.length).set(pixels);
    const ort = this.ort;
    const input = ort.tensorAt(this.cpuInfo, this.input.ptr, 'float', [n, numChannels, h, w]);
    const output = ort.tensorAt(this.cpuInfo, this.output.ptr, 'float', outShape);
    try {
      ort.bindInput(this.binding, VisionIO.pixelValues, input);
      ort.bindOutput(this.binding, VisionIO.imageFeatures, output);
      ort.runWithBinding(this.session, null, this.binding);
    } finally {
      ort.clearBindings(this.binding);
      ort.release(input);
      ort.release(output);
    }
    return { data: new Float32Array(this.output.bytes, 0, outCount).slice(), shape: outShape };
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.ort.release(this.binding);
    this.ort.release(this.session);
    this.ort.release(this.cpuInfo);
    this.input.free();
    this.output.free();
    this.onDispose();
  }
}

/** `buf`, or a larger buffer in its place (the old one freed) when it holds fewer than `bytes`. */
function grown(buf: HostBuffer, bytes: number): HostBuffer {
  if (buf.byteLength >= bytes) return buf;
  buf.free();
  return new HostBuffer(Math.max(bytes, 2 * buf.byteLength));
}
