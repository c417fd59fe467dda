import type { AcceptResult } from '../sampling/guided/guided-runtime.js';
import type { Sequence, TokenLogprob } from '../sequence.js';
import type { EngineMetrics } from './metrics.js';
import type { CompletionOutput, GenerateResult, StreamEvent } from './request.js';
import type { RequestState } from './request-state.js';

/**
 * The engine's back: appends a sampled token to its sequence, detokenizes incrementally, checks
 * the stop conditions (EOS, stop ids, stop strings, max tokens, the context end), streams deltas
 * and settles finished requests with their usage and timings, observing the metrics. It writes a
 * sequence's output (`outputIds`, logprobs, token times, finish status); the scheduler writes its
 * KV progress (`numComputedTokens`).
 */
export class OutputProcessor {
  constructor(
    private readonly eosTokenIds: readonly number[],
    private readonly maxModelLen: number,
    private readonly metrics: EngineMetrics,
    /** Advances a guided sequence's grammar by the appended token. */
    private readonly guided?: { accept(seq: Sequence, token: number): AcceptResult },
  ) {}

  /** Appends `token` to `seq` (of `state`), emits the delta, and finishes the sequence on a stop. */
  append(state: RequestState, seq: Sequence, token: number, logprob?: TokenLogprob): void {
    const now = performance.now();
    const sp = seq.sampling;
    seq.outputIds.push(token);
    if (logprob) seq.outputLogprobs.push(logprob);
    if (seq.lastTokenTime !== undefined) {
      this.metrics.interTokenLatency.observe((now - seq.lastTokenTime) / 1000);
      if (seq === state.seqs[0]) state.itlMs.push(now - seq.lastTokenTime);
    }
    seq.firstTokenTime ??= now;
    seq.lastTokenTime = now;
    const index = state.seqs.indexOf(seq);
    const detok = state.detoks[index];
    const text = detok.push(token);
    const guided = this.guided?.accept(seq, token);
    let reason: 'stop' | 'length' | 'error' | undefined;
    // A token outside the grammar is a bug (the mask forbids it): end the sequence, never emit more.
    if (guided === 'rejected') reason = 'error';
    else if (!sp.ignoreEos && this.eosTokenIds.includes(token)) reason = 'stop';
    else if (sp.stopTokenIds.includes(token)) {
      reason = 'stop';
      seq.stopReason = token;
    } else if (detok.stopped !== undefined) {
      reason = 'stop';
      seq.stopReason = detok.stopped;
    } else if (guided === 'terminated') reason = 'stop';
    else if (seq.outputIds.length >= sp.maxTokens || seq.length >= this.maxModelLen) reason = 'length';
    const tail = reason ? detok.finish() : '';
    if (reason) {
      seq.status = 'finished';
      seq.finishReason = reason;
      seq.finishedTime = now;
    }
    emit(state, {
      type: 'delta',
      index,
      tokenIds: [token],
      text: text + tail,
      logprobs: logprob ? [logprob] : undefined,
      finishReason: reason,
      stopReason: seq.stopReason,
    });
  }

  /** Settles a request: rejects it with `error`, or resolves it with its result and emits 'done'. */
  settle(state: RequestState, error?: Error): void {
    if (error) {
      this.metrics.numRequestsFailed++;
      state.reject(error);
      return;
    }
    const result = this.result(state);
    const m = this.metrics;
    m.numPromptTokens += result.usage.promptTokens;
    m.numGenerationTokens += result.usage.completionTokens;
    if (result.outputs.every((o) => o.finishReason === 'abort')) {
      // Stopped, not served: counted apart, and kept out of the latency histograms.
      m.numRequestsAborted++;
      emit(state, { type: 'done', result });
      state.resolve(result);
      return;
    }
    m.numRequestsFinished++;
    m.queueTime.observe(result.metrics.queueMs / 1000);
    m.e2eLatency.observe(result.metrics.e2eMs / 1000);
    if (state.seqs[0].firstTokenTime !== undefined) m.ttft.observe(result.metrics.ttftMs / 1000);
    emit(state, { type: 'done', result });
    state.resolve(result);
  }

  private result(state: RequestState): GenerateResult {
    const outputs: CompletionOutput[] = state.seqs.map((seq, index) => ({
      index,
      tokenIds: [...seq.outputIds],
      text: state.detoks[index].text,
      finishReason: seq.finishReason ?? 'abort',
      stopReason: seq.stopReason,
      logprobs: seq.sampling.logprobs !== undefined ? seq.outputLogprobs : undefined,
    }));
    const first = state.seqs[0];
    const end = performance.now();
    return {
      id: state.id,
      promptTokenIds: state.promptIds,
      ...(state.promptLogprobs ? { promptLogprobs: state.promptLogprobs } : {}),
      outputs,
      usage: {
        promptTokens: state.promptIds.length,
        completionTokens: outputs.reduce((a, o) => a + o.tokenIds.length, 0),
        cachedTokens: first.numCachedTokens,
      },
      metrics: {
        queueMs: (first.firstScheduledTime ?? end) - state.arrival,
        ttftMs: (first.firstTokenTime ?? end) - state.arrival,
        e2eMs: end - state.arrival,
        itlMs: state.itlMs,
      },
    };
  }
}

function emit(state: RequestState, e: StreamEvent): void {
  for (const l of state.listeners) l(e);
}
