import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Imports `specifier` in a fresh node process and lists the CommonJS modules it loaded (fastify is
 * CommonJS, so loading it in any way puts it in `require.cache`) and whether `createEngine` came.
 */
function loadedBy(specifier: string): { modules: string[]; hasCreateEngine: boolean } {
  const script = `
    import { createRequire } from 'node:module';
    const m = await import(${JSON.stringify(specifier)});
    const modules = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify({ modules, hasCreateEngine: typeof m.createEngine === 'function' }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: here,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`node exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

describe('@switchyard/server/engine', () => {
  it('builds engines without loading fastify', () => {
    const engine = loadedBy('@switchyard/server/engine');
    expect(engine.hasCreateEngine).toBe(true);
    expect(engine.modules.filter((m) => /[\\/]node_modules[\\/]fastify[\\/]/.test(m))).toEqual([]);
    // The check can fail: the package's main entry (the server and CLI) does load fastify.
    const server = loadedBy('@switchyard/server');
    expect(server.modules.some((m) => /[\\/]node_modules[\\/]fastify[\\/]/.test(m))).toBe(true);
  });
});
