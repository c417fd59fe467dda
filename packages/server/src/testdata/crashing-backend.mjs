/**
 * A backend for the isolation tests, registered from test code as a user's would be: core's cpu
 * executor, except that a step whose tokens include `settings.crashToken` crashes the process it
 * runs in — a real signal (`settings.crashWith` 'SIGSEGV', 'SIGABRT' through process.abort, or
 * 'SIGKILL'), `process.exit(3)` ('exit': on a worker thread it ends the thread only), or a plain JS
 * error ('throw'). Plain JS, so a child process imports it as it is.
 */
import { backendRegistry, cpuBackend } from '@switchyard/core';

export const CRASHING_DEVICE = 'cpu-crashing';

function crash(how) {
  if (how === 'throw') throw new Error('the crashing backend threw on purpose');
  if (how === 'SIGABRT') process.abort();
  if (how === 'exit') process.exit(3);
  process.kill(process.pid, how);
}

export const crashingBackend = {
  ...cpuBackend,
  name: CRASHING_DEVICE,
  async createExecutor(checkpoint, spec, options) {
    const { crashToken, crashWith = 'SIGSEGV', ...rest } = options.settings ?? {};
    const settings = Object.keys(rest).length ? rest : undefined;
    const inner = await cpuBackend.createExecutor(checkpoint, spec, { ...options, settings });
    const crashes = (batch) => batch.some((s) => Array.from(s.tokenIds).includes(crashToken));
    return {
      device: CRASHING_DEVICE,
      vocabSize: inner.vocabSize,
      kvBytesPerToken: inner.kvBytesPerToken,
      pool: inner.pool,
      run: async (batch) => {
        if (crashes(batch)) crash(crashWith);
        return inner.run(batch);
      },
      // Greedy steps come back as ids (as on cuda), so both replies cross the thread or process.
      runGreedy: async (batch) => {
        if (crashes(batch)) crash(crashWith);
        const logits = await inner.run(batch);
        const ids = new Int32Array(logits.length / inner.vocabSize);
        for (let r = 0; r < ids.length; r++) {
          const row = logits.subarray(r * inner.vocabSize, (r + 1) * inner.vocabSize);
          ids[r] = row.indexOf(Math.max(...row));
        }
        return ids;
      },
      dispose: () => inner.dispose(),
    };
  },
};

export function register(container) {
  backendRegistry(container).register(CRASHING_DEVICE, crashingBackend);
}
