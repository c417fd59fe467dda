import { register as registerPaged } from '@switchyard/attention-paged';
import { createContainer } from '@switchyard/core';
import { vlmParity } from '@switchyard/core/testing';
import { register as registerContinuous } from '@switchyard/scheduler-continuous';
import { register } from './index.js';

const container = () => {
  const c = createContainer();
  for (const r of [register, registerContinuous, registerPaged]) r(c);
  return c;
};

vlmParity('llava-tiny', container);
// transformers' pixel values carry a batch dim before the tiles: [1, tiles, 3, H, W].
vlmParity('llava-next-tiny', container, { pixelShape: (shape) => shape.slice(1) });
