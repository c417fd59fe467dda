import type { FrontendBackend } from './backend.js';
import { type ProgramEvent, ProgramState } from './program-state.js';

/** A frontend program: an async function of a state `s` and its arguments (SGLang's `@function`). */
export interface Program<A extends unknown[]> {
  /** Runs once; resolves with the final state (its `vars`, `calls`, `conversation()`). */
  run(backend: FrontendBackend, ...args: A): Promise<ProgramState>;
  /** Runs once per argument list, at most `concurrency` at a time; states in input order. */
  runBatch(
    backend: FrontendBackend,
    argsList: A[],
    options?: { concurrency?: number },
  ): Promise<ProgramState[]>;
  /** Runs once, yielding text as it is generated (`{name, delta}`), then the final state. */
  stream(backend: FrontendBackend, ...args: A): AsyncGenerator<ProgramEvent | { done: ProgramState }>;
}

/** Makes a program from `body(s, ...args)`. */
export function program<A extends unknown[]>(
  body: (s: ProgramState, ...args: A) => Promise<void>,
): Program<A> {
  const run = async (backend: FrontendBackend, ...args: A) => {
    const s = new ProgramState(backend);
    await body(s, ...args);
    return s;
  };
  return {
    run,
    async runBatch(backend, argsList, { concurrency = 8 } = {}) {
      const out: ProgramState[] = new Array(argsList.length);
      let next = 0;
      const worker = async () => {
        while (next < argsList.length) {
          const i = next++;
          out[i] = await run(backend, ...argsList[i]);
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, argsList.length)) }, worker));
      return out;
    },
    async *stream(backend, ...args) {
      const queue: (ProgramEvent | { done: ProgramState } | { error: unknown })[] = [];
      let wake: (() => void) | undefined;
      const push = (e: (typeof queue)[number]) => {
        queue.push(e);
        wake?.();
      };
      const s = new ProgramState(backend, push);
      body(s, ...args).then(
        () => push({ done: s }),
        (error) => push({ error }),
      );
      while (true) {
        while (queue.length) {
          const e = queue.shift()!;
          if ('error' in e) throw e.error;
          yield e;
          if ('done' in e) return;
        }
        await new Promise<void>((r) => {
          wake = r;
        });
        wake = undefined;
      }
    },
  };
}
