export { main } from './cli.js';
export { type BenchReport, benchReport, makeWorkload, type Workload, type WorkloadOptions } from './bench.js';
export { createEngine, registerBuiltins } from './create-engine.js';
