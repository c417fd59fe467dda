import { readFileSync } from 'node:fs';
import type { ChatContentPart, ChatMessage, GuidedSpec } from '@switchyard/core';
import type { FrontendBackend, FrontendResult } from './backend.js';

/** Options of `s.gen` (SGLang's `gen`): at most one of regex, choices and jsonSchema. */
export interface GenOptions {
  maxTokens?: number;
  stop?: string | string[];
  temperature?: number;
  seed?: number;
  regex?: string;
  choices?: string[];
  jsonSchema?: Record<string, unknown>;
}

/** One generation a program made, for inspecting prefix reuse (`cachedTokens`). */
export interface CallRecord {
  name: string;
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
}

/** What a streaming run reports: text as it is generated into a variable. */
export interface ProgramEvent {
  name: string;
  delta: string;
}

/** How `select` picks: by the model's length-normalized logprob of each choice (SGLang's default), or by a grammar. */
export type SelectMethod = 'logprob' | 'grammar';

/**
 * The state `s` a frontend program writes into (SGLang's `ProgramState`): the conversation
 * (`system` / `user` / `assistant` turns, images), the variables `gen` and `select` filled, and
 * the calls made. A turn whose role is assistant stays open while `gen` / `select` / `add` write
 * into it; the next `user` or `system` call closes it. `fork` copies the state; forks share the
 * prefix, so their generations find its KV in the prefix cache.
 */
export class ProgramState {
  readonly vars: Record<string, string> = {};
  readonly calls: CallRecord[] = [];
  private messages: ChatMessage[] = [];
  private images: Uint8Array[] = [];
  /** The open assistant turn's text, or undefined when no assistant turn is open. */
  private open: string | undefined;

  constructor(
    private readonly backend: FrontendBackend,
    private readonly onEvent?: (e: ProgramEvent) => void,
  ) {}

  system(text: string): this {
    return this.turn('system', text);
  }

  /** A user turn: text, or parts mixing text and images (bytes or a file path). */
  user(content: string | (string | { image: Uint8Array | string })[]): this {
    if (typeof content === 'string') return this.turn('user', content);
    const parts: ChatContentPart[] = content.map((p) => {
      if (typeof p === 'string') return { type: 'text', text: p };
      this.images.push(readImage(p.image));
      return { type: 'image' };
    });
    this.close();
    this.messages.push({ role: 'user', content: parts });
    return this;
  }

  /** Adds an image to the last user turn (opening one if needed): SGLang's `s += image(...)`. */
  image(image: Uint8Array | string): this {
    this.close();
    const last = this.messages.at(-1);
    this.images.push(readImage(image));
    if (last?.role === 'user') {
      const parts: ChatContentPart[] =
        typeof last.content === 'string' ? [{ type: 'text', text: last.content }] : last.content;
      last.content = [{ type: 'image' }, ...parts];
    } else this.messages.push({ role: 'user', content: [{ type: 'image' }] });
    return this;
  }

  /**
   * Opens an assistant turn; with text, writes it (a fixed answer), and `assistant(text)` followed
   * by no gen closes with the next turn. Returns the state for chaining.
   */
  assistant(text = ''): this {
    this.close();
    this.open = text;
    return this;
  }

  /** Appends fixed text to the open assistant turn (opening one if needed). */
  add(text: string): this {
    this.open = (this.open ?? '') + text;
    return this;
  }

  /** Generates into the open assistant turn (opening one) and stores the text as `name`. */
  async gen(name: string, options: GenOptions = {}): Promise<string> {
    const guided = guidedOf(options);
    const r = await this.call(name, {
      maxTokens: options.maxTokens ?? 64,
      temperature: options.temperature,
      seed: options.seed,
      stop: typeof options.stop === 'string' ? [options.stop] : options.stop,
      guided,
    });
    this.vars[name] = r.text;
    this.open = (this.open ?? '') + r.text;
    return r.text;
  }

  /**
   * Picks one of `choices` into the open assistant turn. `logprob` (default) scores each choice by
   * the mean raw logprob of its tokens after the prefix, as SGLang does (one forced generation per
   * choice; they share the prefix KV); `grammar` lets the model pick under a choice grammar.
   */
  async select(name: string, choices: string[], method: SelectMethod = 'logprob'): Promise<string> {
    if (choices.length === 0) throw new Error('select needs at least one choice');
    let pick: string;
    if (method === 'grammar') {
      pick = (await this.call(name, { maxTokens: 256, guided: { type: 'choice', choices } })).text;
    } else {
      const scores = await Promise.all(
        choices.map(async (c) => {
          const r = await this.call(name, {
            maxTokens: 256,
            guided: { type: 'choice', choices: [c] },
            logprobs: true,
          });
          return meanLogprob(r, c);
        }),
      );
      pick = choices[scores.indexOf(Math.max(...scores))];
    }
    this.vars[name] = pick;
    this.open = (this.open ?? '') + pick;
    return pick;
  }

  /**
   * Copies the state `n` times and runs `body` on each copy concurrently (SGLang's `fork`); the
   * copies share this state's conversation, so their generations reuse its KV. Returns the forks
   * once all finished (the join); this state is unchanged. Without `body`, returns the copies for
   * the caller to drive (join them with `Promise.all`).
   */
  async fork(n: number, body?: (f: ProgramState, i: number) => Promise<void>): Promise<ProgramState[]> {
    if (!Number.isInteger(n) || n < 1) throw new Error(`fork needs a positive integer, got ${n}`);
    const forks = Array.from({ length: n }, () => this.copy());
    if (body) await Promise.all(forks.map((f, i) => body(f, i)));
    return forks;
  }

  /** The conversation so far (the open assistant turn included, unfinished). */
  conversation(): ChatMessage[] {
    return this.open === undefined
      ? [...this.messages]
      : [...this.messages, { role: 'assistant', content: this.open }];
  }

  get(name: string): string | undefined {
    return this.vars[name];
  }

  private copy(): ProgramState {
    const f = new ProgramState(this.backend, this.onEvent);
    f.messages = this.messages.map((m) => ({
      ...m,
      content: typeof m.content === 'string' ? m.content : [...m.content],
    }));
    f.images = [...this.images];
    f.open = this.open;
    Object.assign(f.vars, this.vars);
    return f;
  }

  private turn(role: string, text: string): this {
    this.close();
    this.messages.push({ role, content: text });
    return this;
  }

  private close(): void {
    if (this.open !== undefined) this.messages.push({ role: 'assistant', content: this.open });
    this.open = undefined;
  }

  private async call(
    name: string,
    opts: {
      maxTokens: number;
      temperature?: number;
      seed?: number;
      stop?: string[];
      guided?: GuidedSpec;
      logprobs?: boolean;
    },
  ): Promise<FrontendResult> {
    // An open assistant turn with text is continued; an empty one starts with the generation prompt.
    const continueFinal = this.open !== undefined && this.open !== '';
    const messages = continueFinal ? this.conversation() : [...this.messages];
    const onText = this.onEvent ? (delta: string) => this.onEvent!({ name, delta }) : undefined;
    const r = await this.backend.generate({ ...opts, messages, continueFinal, images: this.images }, onText);
    this.calls.push({
      name,
      promptTokens: r.promptTokens,
      cachedTokens: r.cachedTokens,
      completionTokens: r.completionTokens,
    });
    if (this.open === undefined) this.open = '';
    return r;
  }
}

function guidedOf(o: GenOptions): GuidedSpec | undefined {
  const given = [o.regex, o.choices, o.jsonSchema].filter((x) => x !== undefined);
  if (given.length > 1) throw new Error('gen takes at most one of regex, choices and jsonSchema');
  if (o.regex !== undefined) return { type: 'regex', pattern: o.regex };
  if (o.choices !== undefined) return { type: 'choice', choices: o.choices };
  if (o.jsonSchema !== undefined) return { type: 'json_schema', schema: o.jsonSchema };
  return undefined;
}

/** Mean raw logprob of the tokens that spell `choice` (the stop token after it excluded). */
function meanLogprob(r: FrontendResult, choice: string): number {
  const lps = r.tokenLogprobs ?? [];
  let covered = 0;
  let sum = 0;
  let n = 0;
  for (const l of lps) {
    if (covered >= choice.length) break;
    covered += l.text.length;
    sum += l.logprob;
    n++;
  }
  return n ? sum / n : Number.NEGATIVE_INFINITY;
}

function readImage(image: Uint8Array | string): Uint8Array {
  return typeof image === 'string' ? readFileSync(image) : image;
}
