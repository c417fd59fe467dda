import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = join(import.meta.dirname, '..', 'dist', 'bin.js');

/** Reads SSE `data:` payloads from a streaming response until it ends. */
async function readEvents(res: Response, onFirst: () => void): Promise<string[]> {
  const events: string[] = [];
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of res.body!) {
    buf += decoder.decode(chunk as Uint8Array, { stream: true });
    let i = buf.indexOf('\n\n');
    while (i >= 0) {
      events.push(buf.slice(0, i).replace(/^data: /, ''));
      if (events.length === 1) onFirst();
      buf = buf.slice(i + 2);
      i = buf.indexOf('\n\n');
    }
  }
  return events;
}

describe('switchyard serve', () => {
  it('drains on SIGTERM: running streams finish, new requests get 503, then exit 0', async () => {
    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--drain-timeout', '20'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 20_000);
      child.stderr.on('data', (d) => {
        stderr += d;
        const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const body = JSON.stringify({
      prompt: 'Which module defines deque?',
      max_tokens: 120,
      ignore_eos: true,
      stream: true,
    });
    // SIGTERM once every stream is under way (has its first event), so all three were admitted.
    let signalled = false;
    let started = 0;
    const streams = Array.from({ length: 3 }, async () => {
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      return readEvents(res, () => {
        if (++started === 3 && !signalled) {
          signalled = true;
          child.kill('SIGTERM');
        }
      });
    });
    // Once the signal is in, new work is refused while the streams run on.
    await new Promise((r) => setTimeout(r, 50));
    while (!signalled) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 20));
    const late = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"prompt":"hi"}',
    });
    expect(late.status).toBe(503);
    for (const events of await Promise.all(streams)) {
      expect(events.at(-1)).toBe('[DONE]');
      const tokens = events.slice(0, -1).filter((e) => JSON.parse(e).choices?.length).length;
      expect(tokens).toBe(120);
    }
    expect(await exited).toBe(0);
  }, 60_000);
});
