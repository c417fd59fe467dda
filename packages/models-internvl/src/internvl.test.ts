import { register as registerPaged } from '@switchyard/attention-paged';
import { createContainer } from '@switchyard/core';
import { vlmParity } from '@switchyard/core/testing';
import { register as registerContinuous } from '@switchyard/scheduler-continuous';
import { register } from './index.js';

vlmParity('internvl-tiny', () => {
  const c = createContainer();
  for (const r of [register, registerContinuous, registerPaged]) r(c);
  return c;
});
