import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

export const ROOT = join(import.meta.dirname, '..', '..', '..');
export const BIN = join(ROOT, 'packages', 'server', 'dist', 'bin.js');
/** The model served (default: the embedded vision demo). */
export const MODEL =
  process.env.SWITCHYARD_PLAYGROUND_MODEL ?? join(ROOT, 'models', 'switchyard-demo-vision');
export const CHROMIUM = process.env.SWITCHYARD_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Why the browser tests cannot run here, or undefined. With SWITCHYARD_REQUIRE_BROWSER=1 (CI)
 * a missing browser is an error rather than a skip.
 */
export function missing(): string | undefined {
  const why = !existsSync(CHROMIUM)
    ? `browser tests skipped: no chromium at ${CHROMIUM} (apt-get install -y chromium, or set SWITCHYARD_CHROMIUM)`
    : !existsSync(BIN)
      ? `browser tests skipped: ${BIN} is not built (npm run build)`
      : !existsSync(join(import.meta.dirname, '..', 'dist', 'index.html'))
        ? 'browser tests skipped: the playground is not built (npm run build)'
        : undefined;
  if (why && process.env.SWITCHYARD_REQUIRE_BROWSER === '1')
    throw new Error(why.replace('skipped', 'cannot run'));
  if (why) console.warn(why);
  return why;
}

export interface Served {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts the real CLI, `switchyard serve`, on a port the OS picks; resolves once it listens. */
export async function serve(args: string[] = []): Promise<Served> {
  const child = spawn(process.execPath, [BIN, 'serve', '--model', MODEL, '--port', '0', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start: ${stderr}`)), 30_000);
    child.on('exit', (code) => reject(new Error(`the server exited ${code}: ${stderr}`)));
    child.stderr!.on('data', (d) => {
      stderr += d;
      const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  return {
    url,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGINT');
      }),
  };
}

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught page errors seen so far. */
  errors: string[];
  close(): Promise<void>;
}

/** Debian's chromium, headless, on a fresh profile; collects console errors. */
export async function browse(url: string, viewport = { width: 1200, height: 900 }): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'switchyard-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  return {
    context,
    page,
    errors,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Runs the CLI and parses its one-line JSON output. */
export async function cliJson<T>(args: string[]): Promise<T> {
  const { stdout } = await promisify(execFile)(process.execPath, [BIN, ...args], { cwd: ROOT });
  return JSON.parse(stdout) as T;
}

/** The value of a Prometheus gauge in `/metrics`. */
export async function gauge(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^switchyard:${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

/** Whether a canvas has any non-transparent pixel (uPlot drew something). */
export async function canvasesDrawn(page: Page, selector: string): Promise<boolean[]> {
  return page.$$eval(selector, (canvases) =>
    (canvases as HTMLCanvasElement[]).map((c) => {
      const data = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
      return false;
    }),
  );
}
