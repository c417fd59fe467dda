import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { repoRoot } from '@switchyard/core/testing';
import { describe, expect, it } from 'vitest';

/**
 * Every ```sh block of README.md runs as written (bash -e, from the repo root), with port 8000
 * swapped for a free one so that parallel runs do not collide. They use the embedded demo models.
 */
const root = repoRoot(import.meta.dirname);
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
const skip = !existsSync(join(root, 'node_modules', '.bin', 'switchyard'))
  ? 'node_modules/.bin/switchyard is missing: run `npm ci`'
  : undefined;
if (skip) console.warn(`skipping the README examples: ${skip}`);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Runs a script as an interactive shell would (-m: `kill %1` ends a background job's whole
 * process group), in a process group of its own that is killed when the script exits.
 */
function runScript(script: string, timeoutMs: number) {
  return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn('bash', ['-e', '-m', '-o', 'pipefail', '-c', script], { cwd: root, detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const killGroup = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {}
    };
    const timer = setTimeout(killGroup, timeoutMs);
    child.on('exit', (status) => {
      clearTimeout(timer);
      killGroup();
      resolve({ status, stdout, stderr });
    });
  });
}

describe.skipIf(skip !== undefined)('README.md', () => {
  it('has shell examples', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(2);
  });

  blocks.forEach((block, i) => {
    it(`runs sh block ${i + 1} as written: ${block.split('\n')[0].slice(0, 60)}`, async () => {
      const port = await freePort();
      const script = block.replaceAll('8000', String(port));
      const r = await runScript(script, 90_000);
      expect(r.status, `${script}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`).toBe(0);
    }, 100_000);
  });
});
