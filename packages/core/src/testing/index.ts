export * from './fixtures.js';
export * from './text-model-parity.js';
