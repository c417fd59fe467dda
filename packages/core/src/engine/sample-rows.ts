import type { Executor, StepSequence } from '../executor.js';
import type { KvCacheManager } from '../kv-cache.js';
import type { GuidedRuntime } from '../sampling/guided/guided-runtime.js';
import { Sampler, tokenLogprob } from '../sampling/sampler.js';
import type { SchedulerOutput } from '../scheduler.js';
import type { Sequence } from '../sequence.js';
import type { OutputProcessor } from './output-processor.js';
import type { RequestState } from './request-state.js';

/**
 * The sampling half of an engine step: finds each sampled sequence's row in the step's logits
 * (a prompt-logprobs prefill chunk has one row per token, others one), records prompt logprobs,
 * samples under the grammar's constraint, appends the token through the output processor, and
 * appends the tokens jump-forward decoding forces. Mutates the sequences' outputs (via
 * `OutputProcessor.append`) and the sampler's per-sequence state; nothing else.
 */
export class RowSampler {
  private readonly sampler: Sampler;

  constructor(
    private readonly vocabSize: number,
    eosTokenIds: readonly number[],
    private readonly guided: GuidedRuntime,
    private readonly outputs: OutputProcessor,
  ) {
    this.sampler = new Sampler({ eosTokenIds });
  }

  /**
   * Turns one step's output into tokens: `tokens` when the device picked them (one per sampled
   * row), else `logits` rows. Returns the requests whose sequences got tokens.
   */
  async sampleStep(
    scheduled: readonly { seq: Sequence }[],
    batch: readonly StepSequence[],
    stateOf: (seq: Sequence) => RequestState | undefined,
    logits?: Float32Array,
    tokens?: Int32Array,
  ): Promise<Set<RequestState>> {
    const V = this.vocabSize;
    const rows: { seq: Sequence; r: number }[] = [];
    let row = 0;
    scheduled.forEach(({ seq }, i) => {
      const b = batch[i];
      if (b.allLogits) {
        this.recordPromptLogprobs(seq, b, logits!, row, stateOf(seq));
        row += b.tokenIds.length;
        if (b.sample) rows.push({ seq, r: row - 1 });
      } else if (b.sample) rows.push({ seq, r: row++ });
    });
    const constraints = tokens ? [] : await Promise.all(rows.map(({ seq }) => this.guided.constraint(seq)));
    const touched = new Set<RequestState>();
    rows.forEach(({ seq, r }, k) => {
      // A request aborted while the step ran is already finished; its row is dropped.
      if (seq.isFinished) return;
      const state = stateOf(seq)!;
      if (tokens) this.outputs.append(state, seq, tokens[r]);
      else {
        const { token, logprob } = this.sampler.sample(
          logits!.subarray(r * V, (r + 1) * V),
          seq,
          constraints[k],
        );
        this.outputs.append(state, seq, token, logprob);
        // Jump-forward: tokens the grammar forces join the output now; the next step computes them.
        for (const t of seq.isFinished ? [] : this.guided.jumpForward(seq)) {
          this.outputs.append(state, seq, t);
          if (seq.isFinished) break;
        }
      }
      touched.add(state);
    });
    return touched;
  }

  /** Prompt logprobs from a prefill chunk's rows: the row at position q scores prompt token q + 1. */
  private recordPromptLogprobs(
    seq: Sequence,
    b: StepSequence,
    logits: Float32Array,
    row: number,
    state: RequestState | undefined,
  ): void {
    const out = state?.promptLogprobs;
    if (!out || seq.isFinished) return;
    const V = this.vocabSize;
    const prompt = seq.promptIds;
    for (let k = 0; k < b.tokenIds.length; k++) {
      const q = b.start + k;
      if (q + 1 >= prompt.length) break;
      const rowLogits = logits.subarray((row + k) * V, (row + k + 1) * V);
      out[q + 1] = tokenLogprob(rowLogits, prompt[q + 1], seq.sampling.promptLogprobs ?? 0);
    }
  }
}

/**
 * Runs one scheduled step on the executor: the batch (a prompt-logprobs prefill chunk asks for
 * every row's logits), on the device's greedy path when every sampled row is plain greedy (only
 * the argmax comes back), else full logits. Stamps each sequence's first-scheduled time.
 */
export async function runStep(
  executor: Executor,
  kv: KvCacheManager,
  scheduled: SchedulerOutput['scheduled'],
  wantsPromptLogprobs: (seq: Sequence) => boolean,
): Promise<{ batch: StepSequence[]; logits?: Float32Array; tokens?: Int32Array }> {
  const now = performance.now();
  const batch: StepSequence[] = scheduled.map(({ seq, numNewTokens }) => {
    seq.firstScheduledTime ??= now;
    const start = seq.numComputedTokens;
    const tokenIds = new Array<number>(numNewTokens);
    for (let i = 0; i < numNewTokens; i++) tokenIds[i] = seq.tokenAt(start + i);
    const sample = start + numNewTokens === seq.length;
    const allLogits = start < seq.promptIds.length && wantsPromptLogprobs(seq);
    return { tokenIds, start, blockTable: kv.blockTable(seq), sample, allLogits, mm: seq.mm };
  });
  // Greedy rows need only their argmax; a provider that picks it on the device saves the read-back.
  const greedy =
    executor.runGreedy !== undefined &&
    scheduled.every(
      ({ seq }, i) => !batch[i].allLogits && (!batch[i].sample || Sampler.isPlainGreedy(seq.sampling)),
    );
  if (greedy) return { batch, tokens: await executor.runGreedy!(batch) };
  return { batch, logits: await executor.run(batch) };
}
