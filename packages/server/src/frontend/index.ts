export * from './backend.js';
export * from './engine-backend.js';
export * from './http-backend.js';
export * from './program.js';
export * from './program-state.js';
