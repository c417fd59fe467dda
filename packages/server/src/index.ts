export { main } from './cli.js';
export { createEngine, registerBuiltins } from './create-engine.js';
