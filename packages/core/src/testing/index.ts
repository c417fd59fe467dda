export * from './fixtures.js';
export * from './images-together.js';
export * from './kv-conformance.js';
export * from './processor-parity.js';
export * from './scheduler-harness.js';
export * from './text-model-parity.js';
export * from './vit-reference.js';
export * from './vlm-parity.js';
