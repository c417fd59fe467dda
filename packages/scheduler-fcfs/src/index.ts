import { type RegisterFn, type SchedulerFactory, schedulerRegistry } from '@switchyard/core';
import { FcfsScheduler } from './fcfs-scheduler.js';

export { FcfsScheduler } from './fcfs-scheduler.js';

export const createFcfsScheduler: SchedulerFactory = (config, kv) => new FcfsScheduler(config, kv);

/** Registers the scheduler as 'fcfs'. */
export const register: RegisterFn = (container) => {
  schedulerRegistry(container).register('fcfs', createFcfsScheduler);
};
