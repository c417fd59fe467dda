import type { SamplingParams } from '../sampling-params.js';
import type { Sequence, TokenLogprob } from '../sequence.js';
import { applyBitmask } from './guided/guided-matcher.js';
import { Rng } from './rng.js';

/** Histogram used to bound the top-k / top-p candidates without sorting the vocab. */
const BUCKETS = 256;
const PER_NAT = 8;

interface PenaltyState {
  out: readonly number[];
  counted: number;
  counts: Map<number, number>;
  prompt?: Set<number>;
}

export interface SampledToken {
  token: number;
  logprob?: TokenLogprob;
}

function argmax(x: Float32Array): number {
  let best = 0;
  let m = x[0];
  for (let i = 1; i < x.length; i++) {
    if (x[i] > m) {
      m = x[i];
      best = i;
    }
  }
  return best;
}

function hasPenalties(sp: SamplingParams): boolean {
  return sp.repetitionPenalty !== 1 || sp.frequencyPenalty !== 0 || sp.presencePenalty !== 0;
}

/** The logprob of `token` under the raw logits with the `top` most likely alternatives (prompt logprobs). */
export function tokenLogprob(logits: Float32Array, token: number, top: number): TokenLogprob {
  let above = 0;
  const v = logits[token];
  for (let i = 0; i < logits.length; i++) if (logits[i] > v) above++;
  return { ...rawLogprob(logits, token, topN(logits, top)), rank: above + 1 };
}

/**
 * What restricts a row before sampling besides the penalties: the grammar's bitmask of allowed
 * tokens (bit `id % 32` of word `id >> 5`), and the EOS ids that `min_tokens` still forbids.
 */
export interface LogitsConstraint {
  allowed?: Int32Array;
  /** Token ids treated as "stop" by `min_tokens` (EOS; the request's stop ids are added here). */
  eosIds?: readonly number[];
}

/** Log-softmax of the raw logits at `token`, with the alternatives `topN` found. */
function rawLogprob(
  logits: Float32Array,
  token: number,
  top: { ids: number[]; vals: number[] },
): TokenLogprob {
  const m = top.vals.length ? top.vals[0] : maxOf(logits);
  let s = 0;
  for (let i = 0; i < logits.length; i++) s += Math.exp(logits[i] - m);
  const lse = m + Math.log(s);
  return {
    token,
    logprob: logits[token] - lse,
    top: top.ids.map((id, i) => ({ token: id, logprob: top.vals[i] - lse })),
  };
}

function maxOf(x: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > m) m = x[i];
  return m;
}

/** The `n` largest entries, largest first (ties: lower id first); allocation-light insertion. */
function topN(x: Float32Array, n: number): { ids: number[]; vals: number[] } {
  const ids: number[] = [];
  const vals: number[] = [];
  if (n <= 0) return { ids, vals };
  let floor = -Infinity;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (ids.length === n && !(v > floor)) continue;
    let j = ids.length === n ? n - 1 : ids.length;
    while (j > 0 && v > vals[j - 1]) {
      vals[j] = vals[j - 1];
      ids[j] = ids[j - 1];
      j--;
    }
    vals[j] = v;
    ids[j] = i;
    if (ids.length === n) floor = vals[n - 1];
  }
  return { ids, vals };
}

/** What the sampler needs to know about the model. */
export interface SamplerOptions {
  /** The model's end-of-sequence ids, masked out while a sequence is below its `minTokens`. */
  eosTokenIds?: readonly number[];
}

/**
 * Picks the next token of a sequence from one row of logits: repetition, frequency and presence
 * penalties, logit bias, the grammar's mask, the min-tokens mask (EOS and stop token ids get -inf
 * until `minTokens` outputs), then temperature (0: greedy argmax), min-p, top-k, top-p,
 * then a draw from the sequence's own RNG. Keeps per-sequence state (RNG, output-token counts) in
 * WeakMaps, so one sampler serves every sequence and a seed gives the same tokens in any batch.
 * Scratch buffers are reused across calls; the caller's logits are never modified or retained.
 */
export class Sampler {
  /** True when the token is the plain argmax of the raw logits (no penalties, no logprobs). */
  static isPlainGreedy(sp: SamplingParams): boolean {
    return (
      sp.temperature === 0 &&
      !hasPenalties(sp) &&
      sp.logprobs === undefined &&
      sp.guided === undefined &&
      sp.logitBias === undefined &&
      !(sp.minTokens > 0)
    );
  }

  /** The model's EOS ids, used by `min_tokens` when a call's constraint names none. */
  private readonly eosTokenIds: readonly number[];

  constructor(options: SamplerOptions = {}) {
    this.eosTokenIds = options.eosTokenIds ?? [];
  }

  private readonly rngs = new WeakMap<Sequence, Rng>();
  private readonly penalties = new WeakMap<Sequence, PenaltyState>();
  private buf = new Float32Array(0);
  private idx = new Int32Array(0);
  private readonly counts = new Int32Array(BUCKETS);
  private readonly mass = new Float64Array(BUCKETS);
  private z = 0;

  /**
   * Samples one token for `seq` (advancing its RNG); adds raw logprobs (of the model's logits,
   * before penalties, bias and grammar, as vLLM reports them) when the request asks. `constraint`
   * carries the grammar's mask; `min_tokens` and `logit_bias` come from the sampling params.
   */
  sample(logits: Float32Array, seq: Sequence, constraint: LogitsConstraint = {}): SampledToken {
    const sp = seq.sampling;
    const top = sp.logprobs !== undefined ? topN(logits, sp.logprobs) : undefined;
    let token: number;
    if (sp.temperature === 0 && !this.transforms(seq, constraint))
      token = top?.ids.length ? top.ids[0] : argmax(logits);
    else {
      const w = this.penalized(logits, seq, constraint);
      token = sp.temperature === 0 ? argmax(w) : this.draw(w, this.filter(w, sp), this.rng(seq));
    }
    return top ? { token, logprob: rawLogprob(logits, token, top) } : { token };
  }

  /** True when the row must be copied and changed before picking (penalties, bias, mask, min_tokens). */
  private transforms(seq: Sequence, c: LogitsConstraint): boolean {
    const sp = seq.sampling;
    return (
      hasPenalties(sp) ||
      sp.logitBias !== undefined ||
      c.allowed !== undefined ||
      (sp.minTokens > seq.outputIds.length &&
        (c.eosIds ?? this.eosTokenIds).length + sp.stopTokenIds.length > 0)
    );
  }

  /**
   * The tokens `sample` could pick for this row and their probabilities, most likely first (for
   * tests and speculative decoding). Greedy gives the argmax with probability 1.
   */
  candidates(
    logits: Float32Array,
    seq: Sequence,
    constraint: LogitsConstraint = {},
  ): { token: number; prob: number }[] {
    const w = this.penalized(logits, seq, constraint);
    if (seq.sampling.temperature === 0) return [{ token: argmax(w), prob: 1 }];
    const n = this.filter(w, seq.sampling);
    const ids = n < 0 ? Array.from(w.keys()) : Array.from(this.idx.subarray(0, n));
    let z = 0;
    for (const i of ids) z += Math.exp(w[i]);
    return ids.map((token) => ({ token, prob: Math.exp(w[token]) / z })).sort((a, b) => b.prob - a.prob);
  }

  private rng(seq: Sequence): Rng {
    let r = this.rngs.get(seq);
    if (!r) {
      r = new Rng(seq.sampling.seed);
      this.rngs.set(seq, r);
    }
    return r;
  }

  /**
   * Copies the row into the scratch buffer and applies there, in vLLM's order: the penalties,
   * `logit_bias`, `min_tokens` (EOS and stop ids forbidden while fewer tokens were generated), and
   * last the grammar's mask. `min_tokens` yields when it would forbid every token the grammar allows.
   */
  private penalized(logits: Float32Array, seq: Sequence, c: LogitsConstraint = {}): Float32Array {
    const V = logits.length;
    if (this.buf.length !== V) this.buf = new Float32Array(V);
    const w = this.buf;
    w.set(logits);
    const sp = seq.sampling;
    if (hasPenalties(sp)) this.applyPenalties(w, seq);
    if (sp.logitBias) for (const [id, b] of Object.entries(sp.logitBias)) if (+id < V) w[+id] += b;
    if (c.allowed) applyBitmask(w, c.allowed);
    if (sp.minTokens > seq.outputIds.length) {
      const stops = [...(c.eosIds ?? this.eosTokenIds), ...sp.stopTokenIds].filter((t) => t >= 0 && t < V);
      const saved = stops.map((t) => w[t]);
      for (const t of stops) w[t] = Number.NEGATIVE_INFINITY;
      if (!(maxOf(w) > Number.NEGATIVE_INFINITY)) {
        for (let i = 0; i < stops.length; i++) w[stops[i]] = saved[i];
      }
    }
    return w;
  }

  private applyPenalties(w: Float32Array, seq: Sequence): void {
    const V = w.length;
    const sp = seq.sampling;
    const st = this.penaltyState(seq);
    const rep = sp.repetitionPenalty;
    if (rep !== 1) {
      st.prompt ??= new Set(seq.promptIds);
      const pen = (t: number) => {
        if (t >= 0 && t < V) w[t] = w[t] > 0 ? w[t] / rep : w[t] * rep;
      };
      for (const t of st.prompt) pen(t);
      for (const t of st.counts.keys()) if (!st.prompt.has(t)) pen(t);
    }
    const { frequencyPenalty: f, presencePenalty: p } = sp;
    if (f !== 0 || p !== 0) for (const [t, c] of st.counts) if (t >= 0 && t < V) w[t] -= c * f + p;
  }

  /** Output-token counts, updated incrementally; rebuilt if `outputIds` was replaced or shrank. */
  private penaltyState(seq: Sequence): PenaltyState {
    const out = seq.outputIds;
    let st = this.penalties.get(seq);
    if (!st || st.out !== out || st.counted > out.length) {
      st = { out, counted: 0, counts: new Map(), prompt: st?.prompt };
      this.penalties.set(seq, st);
    }
    for (; st.counted < out.length; st.counted++) {
      const t = out[st.counted];
      st.counts.set(t, (st.counts.get(t) ?? 0) + 1);
    }
    return st;
  }

  /**
   * Rewrites `w` in place as temperature-scaled logits minus their max, then applies min-p, top-k
   * and top-p. Returns how many candidates lead `this.idx` (in no particular order), or -1 when
   * every token stays a candidate.
   */
  private filter(w: Float32Array, sp: SamplingParams): number {
    const V = w.length;
    const m = maxOf(w);
    const inv = 1 / sp.temperature;
    const k = sp.topK > 0 && sp.topK < V ? sp.topK : 0;
    const p = sp.topP;
    if (this.idx.length !== V) this.idx = new Int32Array(V);
    const idx = this.idx;
    if (!(m > Number.NEGATIVE_INFINITY && m < Number.POSITIVE_INFINITY)) {
      idx[0] = argmax(w);
      return 1;
    }
    for (let i = 0; i < V; i++) w[i] = (w[i] - m) * inv;
    if (!k && p >= 1 && sp.minP <= 0) return -1;
    const thr = sp.minP > 0 ? Math.log(sp.minP) : Number.NEGATIVE_INFINITY;
    // With top-k, top-p needs only the survivors' mass: no exps here unless min-p left < k tokens.
    let c = this.histogram(w, thr, p < 1 && !k);
    if (p < 1 && k && k >= c) c = this.histogram(w, thr, true);
    const { counts, mass } = this;
    const z = this.z;
    const topK = k > 0 && k < c;
    if (!topK && p >= 1) {
      let n = 0;
      for (let i = 0; i < V; i++) if (w[i] > Number.NEGATIVE_INFINITY && w[i] >= thr) idx[n++] = i;
      return n;
    }
    // The bucket where top-k's count or top-p's mass is reached is the only one to sort: the
    // buckets above it are kept whole, the ones below dropped.
    const target = p * z;
    let cut = BUCKETS - 1;
    let above = 0;
    let massAbove = 0;
    for (let b = 0; b < BUCKETS - 1; b++) {
      if (topK ? above + counts[b] >= k : massAbove + mass[b] >= target) {
        cut = b;
        break;
      }
      above += counts[b];
      massAbove += mass[b];
    }
    // idx[0, above): buckets above the cut; idx[above, end): the cut bucket, sorted.
    let head = 0;
    let end = above;
    const last = cut === BUCKETS - 1;
    for (let i = 0; i < V; i++) {
      const v = w[i];
      if (!(v > Number.NEGATIVE_INFINITY && v >= thr)) continue;
      const d = -v * PER_NAT;
      if (d < cut) idx[head++] = i;
      else if (last || d < cut + 1) idx[end++] = i;
    }
    const byLogit = (a: number, b: number) => w[b] - w[a] || a - b;
    idx.subarray(above, end).sort(byLogit);
    if (!topK) {
      let acc = massAbove;
      let j = above;
      while (j < end && acc < target) acc += Math.exp(w[idx[j++]]);
      return Math.max(1, j);
    }
    let n = k;
    while (n < end && w[idx[n]] === w[idx[k - 1]]) n++;
    if (p >= 1) return n;
    idx.subarray(0, n).sort(byLogit);
    let zk = 0;
    for (let j = 0; j < n; j++) zk += Math.exp(w[idx[j]]);
    let acc = 0;
    let j = 0;
    while (j < n && acc < p * zk) acc += Math.exp(w[idx[j++]]);
    return Math.max(1, j);
  }

  /**
   * Fills `counts` (and `mass`, `z` when asked) with the tokens at or above `thr`, by distance
   * below the max, PER_NAT buckets per nat. Returns the count.
   */
  private histogram(w: Float32Array, thr: number, withMass: boolean): number {
    const { counts, mass } = this;
    counts.fill(0);
    mass.fill(0);
    let c = 0;
    let z = 0;
    for (let i = 0; i < w.length; i++) {
      const v = w[i];
      if (!(v > Number.NEGATIVE_INFINITY && v >= thr)) continue;
      const d = -v * PER_NAT;
      const b = d < BUCKETS - 1 ? d | 0 : BUCKETS - 1;
      counts[b]++;
      c++;
      if (withMass) {
        const e = Math.exp(v);
        mass[b] += e;
        z += e;
      }
    }
    this.z = z;
    return c;
  }

  /** Draws from softmax(w) over the candidates `filter` left; overwrites `w` when n < 0. */
  private draw(w: Float32Array, n: number, rng: Rng): number {
    if (n < 0) {
      let z = 0;
      for (let i = 0; i < w.length; i++) {
        w[i] = Math.exp(w[i]);
        z += w[i];
      }
      let r = rng.next() * z;
      for (let i = 0; i < w.length; i++) {
        r -= w[i];
        if (r < 0) return i;
      }
      return w.indexOf(1);
    }
    const idx = this.idx;
    if (n === 1) return idx[0];
    let z = 0;
    for (let j = 0; j < n; j++) z += Math.exp(w[idx[j]]);
    let r = rng.next() * z;
    for (let j = 0; j < n; j++) {
      r -= Math.exp(w[idx[j]]);
      if (r < 0) return idx[j];
    }
    return idx[0];
  }
}
