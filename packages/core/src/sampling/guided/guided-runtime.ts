import type { CompiledGrammar } from '@mlc-ai/web-xgrammar';
import type { TextTokenizer } from '../../loader/tokenizer.js';
import type { GuidedSpec } from '../../sampling-params.js';
import type { Sequence } from '../../sequence.js';
import type { LogitsConstraint } from '../sampler.js';
import {
  type ClosingScores,
  closingLength,
  closingScores,
  closingToken,
  endsInString,
  oneHotMask,
} from './closing-policy.js';
import { GuidedDecoding, type GuidedDecodingOptions } from './guided-decoding.js';
import type { GuidedMatcher } from './guided-matcher.js';
import { readTokenizerVocab } from './tokenizer-vocab.js';

/** Tokens before `max_tokens` within which the engine checks that the output can still close. */
const CLOSING_HORIZON = 256;
const CLOSING_SLACK = 4;

/** What accepting a token did to a guided sequence. */
export type AcceptResult = 'unguided' | 'ok' | 'rejected' | 'terminated';

/**
 * The engine's side of guided decoding: compiles a request's grammar, keeps one matcher per
 * sequence, gives the sampler each row's constraint, advances the matcher once per appended
 * output token, and proposes jump-forward tokens. XGrammar is loaded on the first guided request.
 * Matchers hold wasm memory: the engine calls `release` when a sequence's request ends.
 */
export class GuidedRuntime {
  private decoding?: Promise<GuidedDecoding>;
  private readonly grammars = new WeakMap<Sequence, CompiledGrammar>();
  private readonly matchers = new Map<Sequence, GuidedMatcher>();
  /** Sequences whose remaining budget only suffices to close their structure. */
  private readonly closing = new WeakSet<Sequence>();
  /** The last closing-length measurement per sequence: tokens needed, and the output length then. */
  private readonly lastNeed = new WeakMap<Sequence, { need: number; at: number }>();
  private scores?: ClosingScores;

  constructor(
    private readonly source: {
      dir: string;
      vocabSize: number;
      eosTokenIds: readonly number[];
      tokenizer: TextTokenizer;
    },
    private readonly options: GuidedDecodingOptions = {},
  ) {}

  /** The compiler (loads XGrammar and the vocabulary on first use). */
  guided(): Promise<GuidedDecoding> {
    this.decoding ??= GuidedDecoding.create(
      readTokenizerVocab(this.source.dir, this.source.vocabSize, this.source.eosTokenIds),
      this.options,
    );
    return this.decoding;
  }

  /** Compiles a request's grammar; throws a SwitchyardError (400) naming what XGrammar rejected. */
  async compile(spec: GuidedSpec): Promise<CompiledGrammar> {
    return (await this.guided()).compile(spec);
  }

  /** Makes `seq` follow `grammar` from its first output token. */
  bind(seq: Sequence, grammar: CompiledGrammar): void {
    this.grammars.set(seq, grammar);
  }

  /** The row constraint for `seq`'s next sample (its matcher is made on first use). */
  async constraint(seq: Sequence): Promise<LogitsConstraint> {
    const eosIds = seq.sampling.ignoreEos ? [] : this.source.eosTokenIds;
    const grammar = this.grammars.get(seq);
    if (!grammar) return { eosIds };
    let m = this.matchers.get(seq);
    if (!m) {
      const stops = seq.sampling.ignoreEos ? [] : [...this.source.eosTokenIds];
      m = await (await this.guided()).matcher(grammar, [...stops, ...seq.sampling.stopTokenIds]);
      // A sequence bound after output existed (never today) would replay it here.
      for (const t of seq.outputIds) m.accept(t);
      if (!this.grammars.has(seq)) {
        m.dispose(); // released while the matcher was being made
        return { eosIds };
      }
      this.matchers.set(seq, m);
    }
    const mask = await m.bitmask();
    if (await this.mustClose(seq, m, mask)) {
      const t = closingToken(mask, this.scores!, this.inString(seq));
      if (t >= 0) return { eosIds, allowed: oneHotMask(m.vocabSize, t) };
    }
    return { eosIds, allowed: mask };
  }

  /**
   * Budget-aware ending: a grammar that allows long strings or numbers lets a weak model write
   * until `max_tokens` and the output is cut, not valid. Within the last `CLOSING_HORIZON` tokens
   * the engine measures (on the matcher, rolled back) how many tokens the closing policy needs to
   * end the structure; once that fills the remaining budget, the sequence takes the policy's token
   * each step (`closingScores`) and so ends valid. Costs a few masks per step near the end only.
   */
  private async mustClose(seq: Sequence, m: GuidedMatcher, mask: Int32Array): Promise<boolean> {
    if (this.closing.has(seq)) return true;
    const remaining = seq.sampling.maxTokens - seq.outputIds.length;
    if (remaining > CLOSING_HORIZON || seq.sampling.ignoreEos) return false;
    this.scores ??= closingScores((await this.guided()).vocab.encodedVocab, [
      ...this.source.eosTokenIds,
      ...seq.sampling.stopTokenIds,
    ]);
    const inString = this.inString(seq);
    if (closingToken(mask, this.scores, inString) < 0) return false;
    // Measure again when the budget nears the last measure, or after a while (the structure grows).
    const last = this.lastNeed.get(seq);
    const out = seq.outputIds.length;
    if (last && remaining - last.need > CLOSING_SLACK * 2 && out - last.at < CLOSING_SLACK * 4) return false;
    const need = await closingLength(m, this.scores, inString, remaining);
    this.lastNeed.set(seq, { need, at: out });
    // Slack: jump-forward may tokenize a forced run into more tokens than the policy would.
    if (need + CLOSING_SLACK < remaining) return false;
    this.closing.add(seq);
    return true;
  }

  /** Advances `seq`'s matcher by the token just appended to its output. */
  accept(seq: Sequence, token: number): AcceptResult {
    const m = this.matchers.get(seq);
    if (!m) return 'unguided';
    if (!m.accept(token)) return 'rejected';
    return m.isTerminated ? 'terminated' : 'ok';
  }

  /**
   * Tokens the grammar forces next (jump-forward), not yet accepted: the forced string tokenized
   * alone, cut at the first token the grammar would not take. Empty when the sequence is unguided,
   * asks for logprobs (forced tokens have none) or turned jump-forward off.
   */
  jumpForward(seq: Sequence): number[] {
    const m = this.matchers.get(seq);
    const sp = seq.sampling;
    if (!m || sp.jumpForward === false || sp.logprobs !== undefined || m.isTerminated) return [];
    const text = m.jumpForwardString();
    if (!text) return [];
    const ids = this.source.tokenizer.encode(text, false);
    // Check the whole run against the grammar, then undo: the engine accepts them as it appends.
    let n = 0;
    while (n < ids.length && m.accept(ids[n])) n++;
    m.rollBack(n);
    return ids.slice(0, n);
  }

  /** Whether the output so far ends inside a JSON string (decides how the closing policy scores). */
  private inString(seq: Sequence): boolean {
    return endsInString(this.source.tokenizer.decode(seq.outputIds, true));
  }

  /** Frees `seq`'s matcher. */
  release(seq: Sequence): void {
    this.matchers.get(seq)?.dispose();
    this.matchers.delete(seq);
    this.grammars.delete(seq);
  }

  /** Matchers alive (for leak tests). */
  get numMatchers(): number {
    return this.matchers.size;
  }

  async close(): Promise<void> {
    for (const m of this.matchers.values()) m.dispose();
    this.matchers.clear();
    const d = this.decoding;
    this.decoding = undefined;
    if (d) await (await d.catch(() => undefined))?.close();
  }
}
