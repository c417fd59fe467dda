/**
 * The thread or child process of an `IsolatedExecutor`: builds the named backend's executor for
 * the checkpoint (the model spec rebuilt through the modules the engine names, as the image threads
 * do) and runs its steps. One protocol over either channel: the thread's `parentPort`, or the
 * IPC channel of a process forked with advanced serialization. The first message is the setup;
 * `ready` (or `failed`) answers it; then each `{id, kind, batch}` gets `{id, out}` or `{id, error}`.
 * On a thread, logits and token ids go back transferred, not copied.
 */
import { parentPort } from 'node:worker_threads';
import { backendRegistry } from '../container.js';
import type { ExecutorOptions } from '../contracts/backend.js';
import { SwitchyardError } from '../errors.js';
import type { Executor, StepSequence } from '../executor.js';
import { describeInWorker } from '../worker-container.js';

export interface ExecutorThreadSetup {
  model: string;
  /** Modules exporting `register(container)` or `registerBuiltins(container)`. */
  modules: string[];
  device: string;
  options: ExecutorOptions;
}

/** A message from the engine: the setup first, then steps. */
export type ToWorker =
  | { setup: ExecutorThreadSetup }
  | { id: number; kind: 'run' | 'runGreedy' | 'dispose'; batch?: StepSequence[] };

async function open({ model, modules, device, options }: ExecutorThreadSetup): Promise<Executor> {
  const { container, checkpoint, spec } = await describeInWorker(model, modules);
  return backendRegistry(container).get(device).createExecutor(checkpoint, spec, options);
}

const errorOf = (e: unknown) => ({
  message: (e as Error).message,
  kind: e instanceof SwitchyardError ? e.kind : 'internal',
  param: e instanceof SwitchyardError ? e.param : undefined,
});

/** The channel to the engine: the thread's port, or this process's IPC channel. */
interface Channel {
  post(message: unknown, transfer?: ArrayBuffer): void;
  on(listener: (message: ToWorker) => void): void;
}

function channel(): Channel {
  const port = parentPort;
  if (port) {
    return {
      post: (m, transfer) => port.postMessage(m, transfer ? [transfer] : []),
      on: (listener) => port.on('message', listener),
    };
  }
  // A child process lives as long as its engine holds the channel: the engine's Ctrl-C or SIGTERM
  // (sent to the whole process group) is the engine's to handle, and a gone engine ends it.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});
  process.on('disconnect', () => process.exit(0));
  return {
    post: (m) => {
      if (process.connected) process.send!(m);
    },
    on: (listener) => process.on('message', listener),
  };
}

const engine = channel();
let ready: Promise<Executor> | undefined;

engine.on(async (msg) => {
  if ('setup' in msg) {
    ready = open(msg.setup);
    ready.then(
      (ex) =>
        engine.post({
          ready: {
            device: ex.device,
            vocabSize: ex.vocabSize,
            kvBytesPerToken: ex.kvBytesPerToken,
            pool: ex.pool,
            greedy: ex.runGreedy !== undefined,
          },
        }),
      (e) => engine.post({ failed: errorOf(e) }),
    );
    return;
  }
  try {
    const ex = await ready!;
    if (msg.kind === 'dispose') {
      await ex.dispose();
      engine.post({ id: msg.id });
      return;
    }
    const out = msg.kind === 'run' ? await ex.run(msg.batch!) : await ex.runGreedy!(msg.batch!);
    engine.post({ id: msg.id, out }, out.buffer as ArrayBuffer);
  } catch (e) {
    engine.post({ id: msg.id, error: errorOf(e) });
  }
});
