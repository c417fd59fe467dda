import type { Checkpoint, VisionTowerSpec } from '@switchyard/core';
import { buildLlavaVisionGraph, clipVisionSpec } from './clip-vision-graph.js';

/** The CLIP vision tower and LLaVA projector of a checkpoint, as a graph any backend can run. */
export function clipTower(ckpt: Checkpoint): VisionTowerSpec {
  const spec = clipVisionSpec(ckpt.config, new Set(ckpt.tensors.keys()));
  return {
    name: 'llava',
    key: spec,
    numChannels: spec.numChannels,
    imageSize: spec.imageSize,
    tokensPerImage: spec.tokensPerImage,
    hiddenSize: spec.textHiddenSize,
    build: (g, w) => buildLlavaVisionGraph(g, spec, w),
  };
}
