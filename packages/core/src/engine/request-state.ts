import type { TextTokenizer } from '../loader/tokenizer.js';
import { IncrementalDetokenizer } from '../sampling/detokenizer.js';
import { Sequence, type TokenLogprob } from '../sequence.js';
import type { ProcessedInput } from './input-processor.js';
import type { GenerateRequest, GenerateResult, StreamEvent } from './request.js';

/**
 * The engine's book of one request while it runs: its sequences (one per completion), their
 * detokenizers, its stream listeners and the promise its caller awaits. The engine creates it;
 * the output processor appends to it and settles it.
 */
export interface RequestState {
  id: string;
  promptIds: number[];
  seqs: Sequence[];
  detoks: IncrementalDetokenizer[];
  /** Sequences of an `n > 1` request waiting for the first one's prompt KV (prefix-cache reuse). */
  pending: Sequence[];
  listeners: ((e: StreamEvent) => void)[];
  itlMs: number[];
  /** Prompt logprobs as prefill computes them (index 0 stays null); only with `promptLogprobs`. */
  promptLogprobs?: (TokenLogprob | null)[];
  done: Promise<GenerateResult>;
  resolve: (r: GenerateResult) => void;
  reject: (e: Error) => void;
  arrival: number;
}

/** A new request's state: one sequence per completion (seeds `seed + i`), nothing enqueued. */
export function createRequestState(
  id: string,
  req: GenerateRequest,
  { promptIds, mm, sampling }: ProcessedInput,
  tokenizer: TextTokenizer,
): RequestState {
  const arrival = performance.now();
  const { priority } = req;
  // Prompt logprobs need every prompt position computed: a salt of its own skips the prefix cache.
  const cacheSalt =
    sampling.promptLogprobs === undefined
      ? req.cacheSalt
      : `${req.cacheSalt ?? ''}\u0000prompt-logprobs:${id}`;
  const seqs = Array.from({ length: sampling.n }, (_, i) => {
    const seed = sampling.seed === undefined ? undefined : sampling.seed + i;
    const seqId = sampling.n === 1 ? id : `${id}#${i}`;
    return new Sequence(
      seqId,
      promptIds,
      { ...sampling, seed },
      { priority, cacheSalt, arrivalTime: arrival, mm },
    );
  });
  const decode = (ids: number[]) => tokenizer.decode(ids, true);
  let resolve!: (r: GenerateResult) => void;
  let reject!: (e: Error) => void;
  const done = new Promise<GenerateResult>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  done.catch(() => {});
  const detoks = seqs.map(
    () =>
      new IncrementalDetokenizer(decode, promptIds, { stop: sampling.stop, minTokens: sampling.minTokens }),
  );
  const pending = seqs.slice(1);
  const promptLogprobs = sampling.promptLogprobs === undefined ? undefined : promptIds.map(() => null);
  return {
    id,
    promptIds,
    seqs,
    detoks,
    pending,
    listeners: [],
    itlMs: [],
    promptLogprobs,
    done,
    resolve,
    reject,
    arrival,
  };
}
