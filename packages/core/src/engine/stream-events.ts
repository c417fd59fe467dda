import type { StreamEvent } from './request.js';
import type { RequestState } from './request-state.js';

/**
 * The events of one request as an async stream: listens to `state`, calls `start` (which enqueues
 * it), yields each event until 'done', throws when the request fails. Aborting `signal` — or the
 * consumer leaving — calls `abort`, which must do nothing once the request is over.
 */
export async function* streamEvents(
  state: RequestState,
  start: () => void,
  abort: () => void,
  signal?: AbortSignal,
): AsyncGenerator<StreamEvent> {
  const queue: StreamEvent[] = [];
  let wake: (() => void) | undefined;
  state.listeners.push((e) => {
    queue.push(e);
    wake?.();
  });
  signal?.addEventListener('abort', abort, { once: true });
  let failed: Error | undefined;
  state.done.catch((e) => {
    failed = e;
    wake?.();
  });
  start();
  try {
    while (true) {
      while (queue.length > 0) {
        const e = queue.shift()!;
        yield e;
        if (e.type === 'done') return;
      }
      if (failed) throw failed;
      await new Promise<void>((r) => {
        wake = r;
      });
      wake = undefined;
    }
  } finally {
    signal?.removeEventListener('abort', abort);
    abort();
  }
}
