export * from './data-url.js';
export * from './decode.js';
export * from './processor-kit.js';
export * from './resize.js';
export * from './types.js';
