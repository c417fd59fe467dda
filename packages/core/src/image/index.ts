export * from './decode.js';
export * from './processors.js';
export * from './resize.js';
export * from './types.js';
