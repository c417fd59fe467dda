import type { GuidedMatcher } from './guided-matcher.js';

/**
 * How strongly each token moves a structured output toward its end: a stop token most, then
 * tokens that close strings, objects and arrays (`"`, `}`, `]`), minus those that open new ones
 * (`{`, `[`), shorter first. Read from the raw vocabulary strings, where these ASCII characters
 * appear as themselves (byte-level and byte-fallback alike); "" (special) tokens score -Infinity.
 */
export function closingScores(encodedVocab: readonly string[], stopIds: readonly number[]): Float32Array {
  const scores = new Float32Array(encodedVocab.length);
  encodedVocab.forEach((s, id) => {
    if (s === '') {
      scores[id] = Number.NEGATIVE_INFINITY;
      return;
    }
    let closers = 0;
    let openers = 0;
    for (const ch of s) {
      if (ch === '"' || ch === '}' || ch === ']') closers++;
      else if (ch === '{' || ch === '[') openers++;
    }
    scores[id] = closers - 2 * openers - 0.01 * s.length;
  });
  for (const id of stopIds) if (id < scores.length) scores[id] = 1000;
  return scores;
}

/** The allowed token with the best closing score (lowest id on ties), or -1 when none is allowed. */
export function closingToken(mask: Int32Array, scores: Float32Array): number {
  let best = -1;
  let bestScore = Number.NEGATIVE_INFINITY;
  const V = scores.length;
  for (let w = 0; w < mask.length; w++) {
    let bits = mask[w];
    while (bits !== 0) {
      const b = 31 - Math.clz32(bits & -bits);
      bits &= bits - 1;
      const id = (w << 5) + b;
      if (id >= V) break;
      if (scores[id] > bestScore || best < 0) {
        bestScore = scores[id];
        best = id;
      }
    }
  }
  return best;
}

/**
 * Tokens the closing policy needs to end the output from the matcher's state (the stop token
 * included), at most `limit + 1`. Leaves the matcher where it was.
 */
export async function closingLength(m: GuidedMatcher, scores: Float32Array, limit: number): Promise<number> {
  let n = 0;
  let steps = 0;
  try {
    while (!m.isTerminated && steps <= limit) {
      const t = closingToken(await m.bitmask(), scores);
      steps++;
      if (t < 0 || !m.accept(t)) return limit + 1;
      n++;
      if (scores[t] >= 1000) break;
    }
    return steps;
  } finally {
    m.rollBack(n);
  }
}

/** A bitmask allowing only `token`. */
export function oneHotMask(vocabSize: number, token: number): Int32Array {
  const mask = new Int32Array(Math.ceil(vocabSize / 32));
  mask[token >>> 5] = 1 << (token & 31);
  return mask;
}
