import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '@switchyard/core/testing';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * What a new user does: clone, `npm ci`, build, `npx switchyard`. Takes about a minute (npm's
 * cache serves the packages); SWITCHYARD_SKIP_CLONE_TEST=1 skips it.
 */
const root = repoRoot(import.meta.dirname);
const skip = process.env.SWITCHYARD_SKIP_CLONE_TEST
  ? 'SWITCHYARD_SKIP_CLONE_TEST is set'
  : !existsSync(join(root, '.git'))
    ? `${root} is not a git checkout`
    : undefined;
if (skip) console.warn(`skipping the fresh-clone test: ${skip}`);
const tmp = mkdtempSync(join(tmpdir(), 'switchyard-clone-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }), 60_000);

const sh = (cmd: string, args: string[], cwd: string) => {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    timeout: 150_000,
    env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1', NPM_CONFIG_UPDATE_NOTIFIER: 'false' },
  });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
};

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

describe.skipIf(skip !== undefined)('a fresh clone', () => {
  it('runs `npx switchyard` after `npm ci && npm start` (and explains before the build)', async () => {
    const dir = join(tmp, 'switchyard');
    expect(sh('git', ['clone', '--quiet', root, dir], tmp).status).toBe(0);
    const ci = sh('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], dir);
    expect(ci.status, ci.out).toBe(0);
    // The bin link exists before anything is built, and says what to do.
    expect(existsSync(join(dir, 'node_modules', '.bin', 'switchyard'))).toBe(true);
    const early = sh('npx', ['switchyard', '--help'], dir);
    expect(early.status).toBe(1);
    expect(early.out).toMatch(/not built yet.*npm run build/);
    // `npm start` builds and serves the demo (on a free port here); then npx finds the CLI.
    const port = await freePort();
    const start = spawn('npm', ['start', '--', '--port', String(port)], { cwd: dir, detached: true });
    let log = '';
    start.stdout.on('data', (d) => {
      log += d;
    });
    start.stderr.on('data', (d) => {
      log += d;
    });
    try {
      const deadline = Date.now() + 150_000;
      while (!/serving .* on http/.test(log) && start.exitCode === null && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 200));
      expect(log).toMatch(/serving .* on http/);
      const health = await fetch(`http://127.0.0.1:${port}/health`);
      expect(health.status).toBe(200);
      // The playground page, built by the same `npm start`.
      const page = await fetch(`http://127.0.0.1:${port}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toMatch(/<title>[^<]*Switchyard/i);
    } finally {
      process.kill(-start.pid!, 'SIGTERM');
    }
    const help = sh('npx', ['switchyard', '--help'], dir);
    expect(help.status, help.out).toBe(0);
    expect(help.out).toMatch(/switchyard serve/);
    // The launcher, not the build output, carries the exec bit: a cache restore cannot drop it.
    expect(statSync(join(dir, 'packages', 'server', 'bin', 'switchyard.js')).mode & 0o111).not.toBe(0);
  }, 240_000);
});
