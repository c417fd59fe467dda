import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/** Where an `IsolatedExecutor` runs its executor: a worker thread, or a child process of its own. */
export type ExecutorIsolation = 'thread' | 'process';

/**
 * The thread or process running an executor, seen from the engine's side: messages out, and
 * (through `startExecutorHost`'s callbacks) messages in and its end. A process's messages are
 * copied (advanced serialization keeps typed arrays typed).
 */
export interface ExecutorHost {
  readonly isolation: ExecutorIsolation;
  /** The child's process id ('process'); this process's own for a thread. */
  readonly pid: number;
  post(message: unknown): void;
  /** Ends it: a process is asked to exit (its IPC channel closed), then killed if it lingers. */
  stop(): Promise<void>;
}

/** The worker's file next to this one: compiled, or under vitest the build's copy of it. */
function workerUrl(): URL {
  const here = new URL(import.meta.url);
  if (here.pathname.endsWith('.ts')) return new URL('../../dist/backends/executor-worker.js', here);
  return new URL('./executor-worker.js', here);
}

/** This process's Node flags minus debugger ones (a second inspector would fight for the port). */
function childExecArgv(): string[] {
  return process.execArgv.filter((a) => !/^--(inspect|debug)/.test(a));
}

/**
 * Starts the worker script on a thread or in a forked process (same script, same messages).
 * `onEnd` is called once, with why it ended ('signal SIGSEGV', 'exit code 1', an error's message);
 * a process inherits this one's environment (LD_LIBRARY_PATH, SWITCHYARD_ORT_CUDA_DIR, …) and
 * Node flags.
 */
export function startExecutorHost(
  isolation: ExecutorIsolation,
  onMessage: (message: unknown) => void,
  onEnd: (why: string) => void,
): ExecutorHost {
  let ended = false;
  const end = (why: string) => {
    if (ended) return;
    ended = true;
    onEnd(why);
  };
  if (isolation === 'thread') {
    const worker = new Worker(workerUrl());
    worker.on('message', onMessage);
    worker.on('error', (e) => end(e.message));
    worker.on('exit', (code) => end(`exit code ${code}`));
    return {
      isolation,
      pid: process.pid,
      post: (m) => worker.postMessage(m),
      stop: async () => {
        await worker.terminate();
      },
    };
  }
  const child: ChildProcess = fork(fileURLToPath(workerUrl()), [], {
    serialization: 'advanced',
    execArgv: childExecArgv(),
    env: process.env,
    // Whatever the child prints (a native crash's report) goes to this process's stderr, never its stdout.
    stdio: ['ignore', 2, 2, 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.on('message', onMessage);
  child.on('error', (e) => end(e.message));
  child.on('exit', (code, signal) => end(signal ? `signal ${signal}` : `exit code ${code}`));
  return {
    isolation,
    pid: child.pid ?? -1,
    post: (m) => {
      if (child.connected) child.send(m as never);
    },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // The child exits when its channel closes; one that hangs (a stuck native call) is killed.
      if (child.connected) child.disconnect();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
