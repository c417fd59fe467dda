/**
 * The thread of a `ThreadedExecutor`: builds the named backend's executor for the checkpoint (the
 * model spec rebuilt through the modules the engine names, as the image threads do) and runs its
 * steps. Logits and token ids go back transferred, not copied.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { backendRegistry, createContainer, modelRegistry } from '../container.js';
import type { ExecutorOptions } from '../contracts/backend.js';
import { SwitchyardError } from '../errors.js';
import type { Executor, StepSequence } from '../executor.js';
import { Checkpoint } from '../loader/checkpoint.js';

export interface ExecutorThreadSetup {
  model: string;
  /** Modules exporting `register(container)` or `registerBuiltins(container)`. */
  modules: string[];
  device: string;
  options: ExecutorOptions;
}

type Register = (container: ReturnType<typeof createContainer>) => unknown;

async function open({ model, modules, device, options }: ExecutorThreadSetup): Promise<Executor> {
  const container = createContainer();
  for (const url of modules) {
    const mod = (await import(url)) as { register?: Register; registerBuiltins?: Register };
    const register = mod.register ?? mod.registerBuiltins;
    if (!register) throw new Error(`${url} exports neither register nor registerBuiltins`);
    register(container);
  }
  const checkpoint = Checkpoint.open(model);
  const spec = modelRegistry(container).get(checkpoint.architecture).describe(checkpoint);
  return backendRegistry(container).get(device).createExecutor(checkpoint, spec, options);
}

const errorOf = (e: unknown) => ({
  message: (e as Error).message,
  kind: e instanceof SwitchyardError ? e.kind : 'internal',
  param: e instanceof SwitchyardError ? e.param : undefined,
});

const port = parentPort!;
const ready = open(workerData as ExecutorThreadSetup);
ready.then(
  (ex) =>
    port.postMessage({
      ready: {
        device: ex.device,
        vocabSize: ex.vocabSize,
        kvBytesPerToken: ex.kvBytesPerToken,
        pool: ex.pool,
        greedy: ex.runGreedy !== undefined,
      },
    }),
  (e) => port.postMessage({ failed: errorOf(e) }),
);

port.on(
  'message',
  async (msg: { id: number; kind: 'run' | 'runGreedy' | 'dispose'; batch?: StepSequence[] }) => {
    try {
      const ex = await ready;
      if (msg.kind === 'dispose') {
        await ex.dispose();
        port.postMessage({ id: msg.id });
        return;
      }
      const out = msg.kind === 'run' ? await ex.run(msg.batch!) : await ex.runGreedy!(msg.batch!);
      port.postMessage({ id: msg.id, out }, [out.buffer as ArrayBuffer]);
    } catch (e) {
      port.postMessage({ id: msg.id, error: errorOf(e) });
    }
  },
);
