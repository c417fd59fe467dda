export * from './data-url.js';
export * from './decode.js';
export * from './image-pipeline.js';
export * from './pixel-budget.js';
export * from './processor-kit.js';
export * from './resize.js';
export * from './types.js';
export * from './worker-pool.js';
