import type { GrammarMatcher } from '@mlc-ai/web-xgrammar';

/**
 * One sequence's position in its grammar. It advances exactly once per output token the engine
 * appends (`accept`), so it always agrees with `outputIds`; recomputing KV after a preemption
 * never feeds it again. Owns wasm memory: call `dispose` when the sequence ends.
 */
export class GuidedMatcher {
  /** Output tokens accepted so far (equals the sequence's output length). */
  numAccepted = 0;
  private disposed = false;

  constructor(
    private readonly matcher: GrammarMatcher,
    readonly vocabSize: number,
  ) {}

  /** Allowed next tokens: bit `id % 32` of word `id >> 5`; bits at or past the vocab size are padding. */
  bitmask(): Promise<Int32Array> {
    return this.matcher.getNextTokenBitmask();
  }

  /** Advances by one token; false (state unchanged) when the grammar does not allow it. */
  accept(token: number): boolean {
    const ok = this.matcher.acceptToken(token);
    if (ok) this.numAccepted++;
    return ok;
  }

  /** The characters the grammar forces next ("" when it leaves a choice). */
  jumpForwardString(): string {
    return this.matcher.findJumpForwardString();
  }

  /** Undoes the last `n` accepted tokens. */
  rollBack(n: number): void {
    if (n <= 0) return;
    this.matcher.rollBack(n);
    this.numAccepted -= n;
  }

  get isTerminated(): boolean {
    return this.matcher.isTerminated();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.matcher.dispose();
  }
}

/** True when `token` is allowed by `mask`. */
export function isAllowed(mask: Int32Array, token: number): boolean {
  return ((mask[token >>> 5] >>> (token & 31)) & 1) === 1;
}

/** Sets every logit the mask forbids to -Infinity (ids past the vocab are never read). */
export function applyBitmask(logits: Float32Array, mask: Int32Array): void {
  const V = logits.length;
  const words = Math.min(mask.length, Math.ceil(V / 32));
  let w = 0;
  while (w < words) {
    const bits = mask[w];
    if (bits === -1) {
      w++;
      continue;
    }
    if (bits === 0) {
      // Most of a constrained row is forbidden: fill whole runs of empty words at once.
      let end = w + 1;
      while (end < words && mask[end] === 0) end++;
      logits.fill(Number.NEGATIVE_INFINITY, w << 5, Math.min(V, end << 5));
      w = end;
      continue;
    }
    const base = w << 5;
    const n = Math.min(32, V - base);
    for (let b = 0; b < n; b++) if (((bits >>> b) & 1) === 0) logits[base + b] = Number.NEGATIVE_INFINITY;
    w++;
  }
}
