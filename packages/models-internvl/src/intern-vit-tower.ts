import type { Checkpoint, VisionTowerSpec } from '@switchyard/core';
import { buildInternVLVisionGraph, internVisionSpec } from './intern-vit-graph.js';

/** The InternViT tower, pixel shuffle and projector of a checkpoint, as a graph any backend can run. */
export function internVitTower(ckpt: Checkpoint): VisionTowerSpec {
  const spec = internVisionSpec(ckpt.config, new Set(ckpt.tensors.keys()));
  return {
    name: 'internvl',
    key: spec,
    numChannels: spec.numChannels,
    imageSize: spec.imageSize,
    tokensPerImage: spec.tokensPerImage,
    hiddenSize: spec.textHiddenSize,
    build: (g, w) => buildInternVLVisionGraph(g, spec, w),
  };
}
