export { type BenchReport, benchReport, makeWorkload, type Workload, type WorkloadOptions } from './bench.js';
export { main } from './cli.js';
export { builtinsModule, createEngine, registerBuiltins } from './create-engine.js';
export * from './frontend/index.js';
