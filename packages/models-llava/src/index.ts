import {
  type Checkpoint,
  type DependencyContainer,
  imageProcessorConfig,
  type ModelDefinition,
  modelRegistry,
  readTensorF32,
  vlmTextDecoder,
} from '@switchyard/core';
import { clipTower } from './clip-tower.js';
import { llavaMultimodal } from './llava.js';
import { llavaNextMultimodal } from './llava-next.js';

/** LLaVA 1.5: CLIP tower, projector, `<image>` → N placeholder tokens. */
export const llava: ModelDefinition = {
  architectures: ['LlavaForConditionalGeneration'],
  describe: (ckpt: Checkpoint) => ({
    architecture: ckpt.architecture,
    decoder: vlmTextDecoder(ckpt),
    multimodal: llavaMultimodal(ckpt.config, imageProcessorConfig(ckpt), clipTower(ckpt)),
  }),
};

/** LLaVA-NeXT (1.6): anyres tiles plus the base image, unpadded, with image_newline per row. */
export const llavaNext: ModelDefinition = {
  architectures: ['LlavaNextForConditionalGeneration'],
  describe: (ckpt: Checkpoint) => {
    const newline = ['image_newline', 'model.image_newline'].find((n) => ckpt.tensors.has(n));
    return {
      architecture: ckpt.architecture,
      decoder: vlmTextDecoder(ckpt),
      multimodal: llavaNextMultimodal(
        ckpt.config,
        imageProcessorConfig(ckpt),
        readTensorF32(ckpt.tensor(newline ?? 'image_newline')),
        clipTower(ckpt),
      ),
    };
  },
};

export function register(container: DependencyContainer): void {
  for (const def of [llava, llavaNext])
    for (const arch of def.architectures) modelRegistry(container).register(arch, def);
}

export * from './clip-processor.js';
export * from './clip-tower.js';
export * from './clip-vision-graph.js';
export * from './llava-next-processor.js';
