import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeImage, imageHash } from '@switchyard/core';
import { describe, expect, it } from 'vitest';
import { makeWorkload, runWorkload, type WorkloadOptions } from './bench.js';
import { runHttpBench } from './bench-http.js';
import { DEMO_VISION_MODEL } from './cli.js';
import { createEngine } from './create-engine.js';
import { buildServer } from './http/app.js';

const BIN = join(import.meta.dirname, '..', 'dist', 'bin.js');

const options = (o: Partial<WorkloadOptions>): WorkloadOptions => ({
  workload: 'random',
  numRequests: 6,
  inputLen: 20,
  outputLen: 5,
  rangeRatio: 0,
  sharedPrefixLen: 0,
  numPrefixes: 1,
  requestRate: Number.POSITIVE_INFINITY,
  seed: 1,
  vocabSize: 2050,
  ...o,
});

describe('the multi-turn and images workloads', () => {
  it('multi-turn: each turn carries the whole conversation so far and follows the turn before it', () => {
    const w = makeWorkload(options({ workload: 'multi-turn', numTurns: 3, numRequests: 7, requestRate: 2 }));
    expect(w.after).toEqual([-1, 0, 1, -1, 3, 4, -1]);
    for (const [i, r] of w.requests.entries()) {
      const prev = w.after![i];
      if (prev < 0) {
        expect(r.promptIds).toHaveLength(20);
        continue;
      }
      const before = w.requests[prev].promptIds!;
      // Earlier prompt, then a seeded reply as long as that turn's output, then the new turn.
      expect(r.promptIds!.slice(0, before.length)).toEqual(before);
      expect(r.promptIds).toHaveLength(before.length + 5 + 20);
      expect(w.arrivals[i]).toBe(w.arrivals[prev]);
    }
    expect(w.arrivals[3]).toBeGreaterThan(0);
    expect(
      makeWorkload(options({ workload: 'multi-turn', numTurns: 3, numRequests: 7, requestRate: 2 })),
    ).toEqual(w);
  });

  it('images: one of N seeded pictures first in every prompt, repeating, the image token nowhere else', async () => {
    const w = makeWorkload(options({ workload: 'images', numImages: 3, imageTokenId: 1000 }));
    const hashes = w.requests.map((r) => imageHash(r.images![0] as Uint8Array));
    expect(new Set(hashes).size).toBe(3);
    expect(hashes.slice(3)).toEqual(hashes.slice(0, 3));
    for (const r of w.requests) {
      expect(r.promptIds![0]).toBe(1000);
      expect(r.promptIds!.slice(1)).not.toContain(1000);
    }
    const picture = await decodeImage(w.requests[0].images![0] as Uint8Array);
    expect([picture.width, picture.height]).toEqual([96, 96]);
    expect(() => makeWorkload(options({ workload: 'images' }))).toThrow(/vision-language model/);
  });

  it('runWorkload sends a follow-up turn only after the turn before it: its prompt hits the cache', async () => {
    const engine = await createEngine({ model: DEMO_VISION_MODEL });
    try {
      const w = makeWorkload(
        options({
          workload: 'multi-turn',
          numTurns: 2,
          numRequests: 4,
          inputLen: 40,
          vocabSize: engine.info.vocabSize,
        }),
      );
      const { results } = await runWorkload(engine, w);
      // Turn 1 finds turn 0's prompt (40 tokens: two full 16-token blocks) in the prefix cache.
      expect(results.map((r) => r.usage.cachedTokens)).toEqual([0, 32, 0, 32]);
    } finally {
      await engine.close();
    }
  });

  it('over HTTP too: a follow-up turn is sent after the turn before it, so the server reports its prefix cached', async () => {
    const engine = await createEngine({ model: DEMO_VISION_MODEL });
    const server = buildServer({ engine });
    const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const w = makeWorkload(
        options({
          workload: 'multi-turn',
          numTurns: 2,
          numRequests: 4,
          inputLen: 40,
          vocabSize: engine.info.vocabSize,
        }),
      );
      const { results } = await runHttpBench(url, w);
      expect(results.map((r) => r.error)).toEqual([undefined, undefined, undefined, undefined]);
      expect(results.map((r) => r.cachedTokens)).toEqual([0, 32, 0, 32]);
    } finally {
      await server.drain(1000);
    }
  });

  it('switchyard bench runs them; images over --url is refused, saying why', async () => {
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, [BIN, 'bench', '--model', DEMO_VISION_MODEL, ...args]);
    for (const workload of ['multi-turn', 'images']) {
      const { stdout } = await run([
        '--workload',
        workload,
        '--num-requests',
        '4',
        '--input-len',
        '8',
        '--output-len',
        '2',
        '--json',
      ]);
      const report = JSON.parse(stdout);
      expect(report, workload).toMatchObject({ requests: 4, config: { workload } });
      // Four distinct pictures (--num-images 4): each encoded once, in at most four tower runs.
      expect(report.vision_images, workload).toBe(workload === 'images' ? 4 : 0);
      expect(report.vision_runs).toBeLessThanOrEqual(report.vision_images);
    }
    await expect(run(['--workload', 'images', '--url', 'http://127.0.0.1:9'])).rejects.toThrow(
      /runs in process only/,
    );
    await expect(run(['--workload', 'chat'])).rejects.toThrow(
      /--workload must be one of random, shared-prefix, multi-turn, images/,
    );
  }, 30_000);
});
