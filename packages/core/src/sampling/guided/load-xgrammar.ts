import { readFileSync } from 'node:fs';
import { createRequire, Module } from 'node:module';

/** The part of `@mlc-ai/web-xgrammar` (pinned 0.1.27) this adapter uses. */
export type XGrammar = typeof import('@mlc-ai/web-xgrammar');

let loaded: XGrammar | undefined;

/** The path of the package's `lib/index.js` (the wasm is embedded in it). */
export function xgrammarPath(): string {
  return createRequire(import.meta.url).resolve('@mlc-ai/web-xgrammar');
}

/**
 * Loads XGrammar's WebAssembly build once per thread. The package says `"type": "module"` but its
 * `lib/index.js` is CommonJS (`require`, `__filename`), so neither `import` nor `require()` works:
 * the file's text is compiled as a CommonJS module instead (`Module#_compile`).
 */
export function loadXGrammar(): XGrammar {
  if (loaded) return loaded;
  const file = xgrammarPath();
  const m = new Module(file) as Module & { _compile(code: string, file: string): void; paths: string[] };
  m.filename = file;
  m.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(file);
  m._compile(readFileSync(file, 'utf8'), file);
  loaded = m.exports as XGrammar;
  return loaded;
}
