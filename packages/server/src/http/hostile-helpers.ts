import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';

const BIN = join(import.meta.dirname, '..', '..', 'dist', 'bin.js');

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/**
 * A 1-bit grayscale PNG of `width` × `height`, white with a black mark whose place depends on
 * `seed` (so each seed is a distinct image): megapixels that deflate to a few KB, the shape of a
 * decompression bomb. Written by hand: encoders take seconds to quantize 64 MP to one bit.
 */
export function oneBitPng(width: number, height: number, seed: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // grayscale
  const stride = Math.ceil(width / 8) + 1;
  const raw = Buffer.alloc(stride * height, 0xff);
  for (let y = 0; y < height; y++) raw[y * stride] = 0; // filter: none
  const row = (seed * 7919) % height;
  raw.fill(0, row * stride + 1, row * stride + stride);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

export const dataUrl = (png: Buffer) => `data:image/png;base64,${png.toString('base64')}`;

export interface Cli {
  url: string;
  pid: number;
  stderr: () => string;
  exited: Promise<number | null>;
  kill: (signal?: NodeJS.Signals) => void;
}

/** Starts `switchyard serve` (the real binary) on a free port of 127.0.0.1. */
export async function startCli(args: string[]): Promise<Cli> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 30_000);
    child.on('exit', () => reject(new Error(`server exited: ${stderr}`)));
    child.stderr.on('data', (d) => {
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
    pid: child.pid!,
    stderr: () => stderr,
    exited,
    kill: (signal = 'SIGKILL') => {
      if (child.exitCode === null) child.kill(signal);
    },
  };
}

/** Resident memory of a process in bytes (Linux /proc). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Samples a server while `work` runs: the slowest /health answer (ms) and the peak RSS (bytes).
 */
export async function watchWhile<T>(
  cli: Cli,
  work: Promise<T>,
): Promise<{ result: T; worstHealthMs: number; peakRss: number; samples: number }> {
  let done = false;
  let worstHealthMs = 0;
  let peakRss = rssOf(cli.pid);
  let samples = 0;
  const rssTimer = setInterval(() => {
    peakRss = Math.max(peakRss, rssOf(cli.pid));
  }, 20);
  const health = (async () => {
    while (!done) {
      const t = performance.now();
      const res = await fetch(`${cli.url}/health`);
      await res.arrayBuffer();
      worstHealthMs = Math.max(worstHealthMs, performance.now() - t);
      samples++;
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  try {
    const result = await work;
    return { result, worstHealthMs, peakRss, samples };
  } finally {
    done = true;
    clearInterval(rssTimer);
    await health;
    peakRss = Math.max(peakRss, rssOf(cli.pid));
  }
}
