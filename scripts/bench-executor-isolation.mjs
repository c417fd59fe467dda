#!/usr/bin/env node
// The cost of running the executor off this thread: batch-1 greedy decode tok/s with the executor
// on this thread ('none'), on a worker thread ('thread') and in a child process ('process'), and
// the time a restart takes (the child killed between steps). Prints one JSON object.
//   npm run build && node scripts/bench-executor-isolation.mjs [--model DIR] [--tokens 256] [--repeats 7]
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { createEngine } from '../packages/server/dist/create-engine.js';

// As its own echo peer (a forked process or a worker thread): answers each step message with
// logits of the size asked, the way the executor's worker does, and runs nothing else.
const isPeer = !isMainThread || process.argv[2] === '--echo' || process.env.SWITCHYARD_BENCH_PEER === '1';
if (isPeer) {
  const echo = (post) => (m) => {
    const out = new Float32Array(m.vocab * m.rows);
    post({ id: m.id, out }, out.buffer);
  };
  if (isMainThread) {
    process.on(
      'message',
      echo((m) => process.send(m)),
    );
    process.on('disconnect', () => process.exit(0));
  } else
    parentPort.on(
      'message',
      echo((m, t) => parentPort.postMessage(m, [t])),
    );
} else await main();

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'models/switchyard-demo-text' },
      tokens: { type: 'string', default: '256' },
      repeats: { type: 'string', default: '7' },
      device: { type: 'string', default: 'cpu' },
    },
  });
  const numTokens = Number(values.tokens);

  /**
   * The transport alone: µs per round trip of a step message (a bs1 decode's batch) and its logits
   * (`vocab` floats, or one int for a greedy step), over a worker thread and over a forked process.
   */
  async function transport(vocab) {
    const batch = [
      { tokenIds: [42], start: 100, blockTable: Array.from({ length: 8 }, (_, i) => i), sample: true },
    ];
    const hosts = {
      thread: () => {
        const w = new Worker(new URL(import.meta.url));
        return { send: (m) => w.postMessage(m), on: (f) => w.on('message', f), stop: () => w.terminate() };
      },
      process: () => {
        const c = fork(new URL(import.meta.url).pathname, ['--echo'], {
          serialization: 'advanced',
          env: { ...process.env, SWITCHYARD_BENCH_PEER: '1' },
        });
        return { send: (m) => c.send(m), on: (f) => c.on('message', f), stop: () => c.disconnect() };
      },
    };
    const res = {};
    for (const [name, make] of Object.entries(hosts)) {
      const h = make();
      let wake;
      h.on((m) => wake(m));
      const once = (id) =>
        new Promise((r) => {
          wake = r;
          h.send({ id, batch, vocab, rows: 1 });
        });
      for (let i = 0; i < 200; i++) await once(i);
      const n = 2000;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await once(i);
      res[name] = +(((performance.now() - t0) / n) * 1000).toFixed(1);
      await h.stop();
    }
    return res;
  }

  const request = {
    promptIds: [1, 2, 3, 4, 5, 6, 7, 8],
    sampling: { maxTokens: numTokens, ignoreEos: true },
  };

  /** Decode tok/s of one request: tokens after the first over the time after the first. */
  async function decodeRate(engine) {
    const t0 = performance.now();
    const [r] = await engine.generate([{ ...request, sampling: { ...request.sampling } }]);
    const decodeMs = performance.now() - t0 - r.metrics.ttftMs;
    return {
      tokPerS: ((r.outputs[0].tokenIds.length - 1) / decodeMs) * 1000,
      msPerStep: decodeMs / (numTokens - 1),
    };
  }

  const out = {
    model: values.model,
    device: values.device,
    tokens: numTokens,
    cpus: (await import('node:os')).cpus().length,
  };
  out.transportUsPerStep = {};
  for (const vocab of [1, 2000, 32000, 151936])
    out.transportUsPerStep[`vocab${vocab}`] = await transport(vocab);
  const modes = ['none', 'thread', 'process'];
  // All three engines at once, measured in turns, so a busy host's drift hits each alike.
  const engines = {};
  for (const isolation of modes)
    engines[isolation] = await createEngine({
      model: values.model,
      device: values.device,
      executorIsolation: isolation,
    });
  try {
    const runs = Object.fromEntries(modes.map((m) => [m, []]));
    for (const m of modes) await decodeRate(engines[m]); // warm-up
    for (let i = 0; i < Number(values.repeats); i++)
      for (const m of modes) runs[m].push(await decodeRate(engines[m]));
    for (const m of modes) {
      const rates = runs[m].map((r) => r.tokPerS).sort((a, b) => a - b);
      const median = rates[Math.floor(rates.length / 2)];
      out[m] = {
        medianTokPerS: +median.toFixed(1),
        bestTokPerS: +rates[rates.length - 1].toFixed(1),
        msPerStep: +(1000 / median).toFixed(3),
        runs: runs[m].map((r) => +r.tokPerS.toFixed(1)),
      };
    }
    // A restart: the child killed between steps, until the new one has loaded the model.
    const engine = engines.process;
    process.kill(engine.executor.pid, 'SIGKILL');
    const t0 = performance.now();
    while (engine.health().status === 'ok') await new Promise((r) => setTimeout(r, 1));
    while (engine.health().status !== 'ok') await new Promise((r) => setTimeout(r, 5));
    out.restartMs = +(performance.now() - t0).toFixed(0);
  } finally {
    for (const m of modes) await engines[m].close();
  }
  for (const k of ['thread', 'process'])
    out[`${k}VsNone`] = +(out[k].medianTokPerS / out.none.medianTokPerS).toFixed(3);
  console.log(JSON.stringify(out));
}
