export * from './compile-worker.js';
export * from './guided-decoding.js';
export * from './guided-matcher.js';
export * from './guided-runtime.js';
export * from './load-xgrammar.js';
export * from './tokenizer-vocab.js';
