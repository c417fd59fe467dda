import { type RegisterFn, type SchedulerFactory, schedulerRegistry } from '@switchyard/core';
import { ContinuousScheduler } from './continuous-scheduler.js';

export { ContinuousScheduler } from './continuous-scheduler.js';

export const createContinuousScheduler: SchedulerFactory = (config, kv) =>
  new ContinuousScheduler(config, kv);

/** Registers the scheduler as 'continuous'. */
export const register: RegisterFn = (container) => {
  schedulerRegistry(container).register('continuous', createContinuousScheduler);
};
