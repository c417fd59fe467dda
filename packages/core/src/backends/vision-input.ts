import { SwitchyardError } from '../errors.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import type { VisionTowerSpec } from '../model.js';
import { type CachedGraph, cachedGraph } from '../onnx/graph-cache.js';

/** Bump when the vision graphs change, so cached ones are rebuilt. */
const VISION_GRAPH_VERSION = 3;

/** The tower's fp32 graph (projector included), built once per checkpoint and shared by backends. */
export function visionGraph(ckpt: Checkpoint, tower: VisionTowerSpec): CachedGraph {
  const key = { spec: tower.key, ep: 'cpu', v: VISION_GRAPH_VERSION };
  return cachedGraph(ckpt, `vision-${tower.name}`, key, (g, w) => tower.build(g, w));
}

/**
 * The number of images (or tiles) N in pixel values of `shape` — [N, C, H, W], or with more
 * leading dims (e.g. [1, tiles, C, H, W]) flattened into N — after checking that they fit the
 * tower; throws an `invalid_request` naming the shape it takes.
 */
export function towerBatchSize(tower: VisionTowerSpec, pixels: Float32Array, shape: number[]): number {
  const { numChannels } = tower;
  const [h, w] = tower.imageSize;
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
  return n;
}
