import type { GuidedMatcher } from './guided-matcher.js';

/**
 * How strongly each token moves a structured output toward its end, in two contexts: inside a
 * JSON string (a token with the closing quote wins, scored further by what follows the quote) and
 * outside (stop tokens most; then `}` `]` which close, `,` `:` which end a number; then letters,
 * which start the short literals true/false/null; digits, quotes and `{` `[` open more work).
 * Longer ASCII tokens break ties (forced text goes fastest); inside strings other bytes go shortest first. Read
 * from the raw vocabulary strings, where these ASCII characters appear as themselves (byte-level
 * and byte-fallback alike); "" (special) tokens score -Infinity.
 */
export interface ClosingScores {
  inString: Float32Array;
  outside: Float32Array;
  /** 1 when the token's unescaped quotes flip the in-string state. */
  flips: Uint8Array;
  stopIds: ReadonlySet<number>;
}

function outsideScore(s: string): number {
  let score = 0.01 * Math.min(s.length, 50);
  for (const ch of s) {
    if (ch === '}' || ch === ']') score += 4;
    else if (ch === '{' || ch === '[') score -= 8;
    else if (ch === '"') score -= 6;
    else if (ch === ',' || ch === ':') score += 0.5;
    else if (ch >= '0' && ch <= '9') score -= 1;
    else if (ch === '-' || ch === '.') score -= 2;
  }
  return score;
}

export function closingScores(encodedVocab: readonly string[], stopIds: readonly number[]): ClosingScores {
  const V = encodedVocab.length;
  const inString = new Float32Array(V);
  const outside = new Float32Array(V);
  const flips = new Uint8Array(V);
  encodedVocab.forEach((s, id) => {
    if (s === '') {
      inString[id] = outside[id] = Number.NEGATIVE_INFINITY;
      return;
    }
    let quotes = 0;
    let firstQuote = -1;
    for (let i = 0; i < s.length; i++) {
      if (s[i] === '"' && (i === 0 || s[i - 1] !== '\\')) {
        quotes++;
        if (firstQuote < 0) firstQuote = i;
      }
    }
    flips[id] = quotes & 1;
    outside[id] = outsideScore(s);
    // Without a quote: ASCII text longest first (a forced key), other bytes shortest first (that
    // completes a split UTF-8 character soonest).
    const len = 0.01 * Math.min(s.length, 50);
    inString[id] =
      firstQuote >= 0
        ? 20 + outsideScore(s.slice(firstQuote + 1))
        : /^[\x20-\x7e]*$/.test(s)
          ? len
          : -1 - len;
  });
  for (const id of stopIds) if (id < V) inString[id] = outside[id] = 1000;
  return { inString, outside, flips, stopIds: new Set(stopIds) };
}

/** Whether `text` ends inside a JSON string (unescaped quotes counted). */
export function endsInString(text: string): boolean {
  let inside = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inside && ch === '\\') i++;
    else if (ch === '"') inside = !inside;
  }
  return inside;
}

/** The allowed token with the best closing score (lowest id on ties), or -1 when none is allowed. */
export function closingToken(mask: Int32Array, scores: ClosingScores, inString: boolean): number {
  const table = inString ? scores.inString : scores.outside;
  let best = -1;
  let bestScore = Number.NEGATIVE_INFINITY;
  const V = table.length;
  for (let w = 0; w < mask.length; w++) {
    let bits = mask[w];
    while (bits !== 0) {
      const b = 31 - Math.clz32(bits & -bits);
      bits &= bits - 1;
      const id = (w << 5) + b;
      if (id >= V) break;
      if (table[id] > bestScore || best < 0) {
        bestScore = table[id];
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
export async function closingLength(
  m: GuidedMatcher,
  scores: ClosingScores,
  inString: boolean,
  limit: number,
): Promise<number> {
  let n = 0;
  let steps = 0;
  let inside = inString;
  try {
    while (!m.isTerminated && steps <= limit) {
      const t = closingToken(await m.bitmask(), scores, inside);
      steps++;
      if (t < 0 || !m.accept(t)) return limit + 1;
      n++;
      if (scores.stopIds.has(t)) break;
      if (scores.flips[t]) inside = !inside;
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
