import { SwitchyardError } from '../errors.js';
import type { GuidedRuntime } from '../sampling/guided/guided-runtime.js';
import type { Scheduler } from '../scheduler.js';
import type { Sequence } from '../sequence.js';
import type { OutputProcessor } from './output-processor.js';
import type { RequestState } from './request-state.js';

/**
 * The engine's queued requests, by id and by sequence. Mutates shared state: `add` hands a
 * request's first sequence to the scheduler, `stop` aborts its sequences there and marks them
 * finished, and settling a request releases its grammar matchers and resolves (or rejects) its
 * result through the output processor.
 */
export class RequestTable {
  private readonly byId = new Map<string, RequestState>();
  private readonly bySeq = new Map<Sequence, RequestState>();

  constructor(
    private readonly scheduler: Scheduler,
    private readonly outputs: OutputProcessor,
    private readonly guided: GuidedRuntime,
  ) {}

  get size(): number {
    return this.byId.size;
  }

  get(id: string): RequestState | undefined {
    return this.byId.get(id);
  }

  /** The request a sequence belongs to. */
  of(seq: Sequence): RequestState | undefined {
    return this.bySeq.get(seq);
  }

  /** Queues a prepared request: its first sequence goes to the scheduler, the others wait for its prompt. */
  add(state: RequestState): void {
    this.byId.set(state.id, state);
    for (const seq of state.seqs) this.bySeq.set(seq, state);
    this.scheduler.add(state.seqs[0]);
  }

  /** Ends a request's sequences; resolves its result, or rejects it with `error`. */
  stop(id: string, error?: Error): boolean {
    const state = this.byId.get(id);
    if (!state) return false;
    for (const seq of state.seqs) {
      if (state.pending.includes(seq)) continue;
      if (!seq.isFinished) this.scheduler.abort(seq.id);
    }
    for (const seq of state.seqs) {
      if (!seq.isFinished) {
        seq.status = 'finished';
        seq.finishReason = 'abort';
      }
    }
    state.pending = [];
    this.settle(state, error);
    return true;
  }

  /** Stops every request: with finish reason 'abort', or rejected with `error`. */
  stopAll(error?: Error): void {
    for (const id of [...this.byId.keys()]) this.stop(id, error);
  }

  /** A step that failed (a bug, not bad input) ends the requests in it; the rest go on. */
  failStep(scheduled: readonly { seq: Sequence }[], error: Error): void {
    for (const state of new Set(scheduled.map(({ seq }) => this.bySeq.get(seq)!))) {
      const why = `request ${state.id} failed in the model step: ${error.message}`;
      this.stop(state.id, new SwitchyardError(why, 'internal'));
    }
  }

  /**
   * The executor lost its KV pool (its process died): every request holding KV there (a running
   * sequence) fails with `error`; waiting ones hold none and stay queued.
   */
  failHoldingKv(error: Error): void {
    for (const state of [...this.byId.values()]) {
      if (!state.seqs.some((s) => s.status === 'running')) continue;
      const why = `request ${state.id} lost its KV cache: ${error.message}`;
      this.stop(state.id, new SwitchyardError(why, 'internal'));
    }
  }

  /** Nothing could be scheduled although sequences wait: they can never fit; fails them clearly. */
  failStuck(kvCacheTokens: number): void {
    for (const state of [...this.byId.values()]) {
      if (!state.seqs.some((s) => s.status === 'waiting' || s.finishReason === 'error')) continue;
      const why = `request ${state.id} cannot be scheduled: the KV cache (${kvCacheTokens} tokens) or the step budget is too small for it`;
      this.stop(state.id, new SwitchyardError(why, 'capacity'));
    }
  }

  /** After a step: starts the other completions once the prompt is in, settles finished requests. */
  afterStep(state: RequestState): void {
    if (state.pending.length > 0 && state.seqs[0].outputIds.length > 0) {
      // The prompt's KV is committed now: the other completions find it in the prefix cache.
      for (const seq of state.pending) this.scheduler.add(seq);
      state.pending = [];
    }
    if (state.seqs.every((s) => s.isFinished)) this.settle(state);
  }

  private settle(state: RequestState, error?: Error): void {
    if (!this.byId.delete(state.id)) return;
    for (const seq of state.seqs) {
      this.bySeq.delete(seq);
      this.guided.release(seq);
    }
    this.outputs.settle(state, error);
  }
}
