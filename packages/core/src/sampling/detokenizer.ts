/** Prompt tokens kept as decoding context for the first output tokens (vLLM uses 5). */
const PROMPT_CONTEXT = 5;
/** Tokens held back waiting for a character to complete before they are emitted anyway. */
const MAX_PENDING = 8;

export interface DetokenizerOptions {
  /** Generation stops at the first of these strings to appear in the output text. */
  stop?: readonly string[];
  /** Keep the stop string at the end of the text (default false: cut before it). */
  includeStopStrInOutput?: boolean;
  /** Stop strings are looked for only once more than this many tokens were pushed (vLLM's min_tokens). */
  minTokens?: number;
}

/**
 * Turns a stream of token ids into text chunks for streaming, with vLLM's prefix_offset /
 * read_offset technique: each push decodes only a short window of recent tokens twice (the part
 * already emitted and the whole window) and emits the difference, holding it back while it ends
 * in U+FFFD (a character split across tokens). Stable text that could still grow into a stop
 * string is held back too; on a hit, the text is cut before the stop string and `stopped` is set.
 * `promptTail`: the last prompt ids (only 5 are used), so the first output tokens decode in context.
 */
export class IncrementalDetokenizer {
  private hit?: string;
  private ids: number[];
  private read: number;
  private held = '';
  private out = '';
  private readonly stop: string[];
  private readonly include: boolean;
  private readonly minTokens: number;
  private pushed = 0;

  constructor(
    private readonly decode: (ids: number[]) => string,
    promptTail: readonly number[] = [],
    options: DetokenizerOptions = {},
  ) {
    this.ids = promptTail.slice(-PROMPT_CONTEXT);
    this.read = this.ids.length;
    this.stop = (options.stop ?? []).filter((s) => s.length > 0);
    this.include = options.includeStopStrInOutput ?? false;
    this.minTokens = options.minTokens ?? 0;
  }

  /** The stop string that ended the output, once one has appeared. */
  get stopped(): string | undefined {
    return this.hit;
  }

  /** All text emitted so far (by `push` and `finish`). */
  get text(): string {
    return this.out;
  }

  /** Adds one output token; returns the text that became stable ('' while held back or after a stop). */
  push(tokenId: number): string {
    if (this.hit !== undefined) return '';
    this.pushed++;
    this.ids.push(tokenId);
    return this.emit(this.step(false));
  }

  /** Flushes everything held back (an incomplete character decodes as U+FFFD); call at the end. */
  finish(): string {
    if (this.hit !== undefined) return '';
    const s = this.emit(this.step(true));
    if (this.hit !== undefined) return s;
    const rest = this.held;
    this.held = '';
    this.out += rest;
    return s + rest;
  }

  /** Decodes the window; on new stable text, slides the window up to the newest token. */
  private step(force: boolean): string {
    const ids = this.ids;
    if (this.read >= ids.length) return '';
    const before = this.read > 0 ? this.decode(ids.slice(0, this.read)) : '';
    const all = this.decode(ids);
    const grown = all.length > before.length;
    if (!force && ids.length - this.read < MAX_PENDING && (!grown || all.endsWith('\uFFFD'))) return '';
    this.ids = ids.slice(this.read);
    this.read = this.ids.length;
    return grown ? all.slice(before.length) : '';
  }

  /** Runs new stable text through the stop strings; returns what can be shown now. */
  private emit(chunk: string): string {
    if (!chunk) return '';
    if (!this.stop.length || this.pushed <= this.minTokens) {
      this.out += chunk;
      return chunk;
    }
    // Held text is a proper prefix of a stop string, so any match lies in held + chunk.
    const buf = this.held + chunk;
    let at = -1;
    let hit: string | undefined;
    for (const s of this.stop) {
      const i = buf.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        hit = s;
      }
    }
    let end: number;
    if (hit !== undefined) {
      this.hit = hit;
      end = at + (this.include ? hit.length : 0);
      this.held = '';
    } else {
      end = buf.length - this.holdLength(buf);
      this.held = buf.slice(end);
    }
    const s = buf.slice(0, end);
    this.out += s;
    return s;
  }

  /** Length of the longest suffix of `buf` that is a proper prefix of some stop string. */
  private holdLength(buf: string): number {
    let best = 0;
    for (const s of this.stop) {
      for (let k = Math.min(s.length - 1, buf.length); k > best; k--) {
        if (buf.endsWith(s.slice(0, k))) {
          best = k;
          break;
        }
      }
    }
    return best;
  }
}
