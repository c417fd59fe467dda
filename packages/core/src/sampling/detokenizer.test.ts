import { describe, expect, it } from 'vitest';
import { IncrementalDetokenizer } from './detokenizer.js';

const enc = new TextEncoder();
/** Byte-level fake tokenizer: token id = byte. */
const bytes = (ids: number[]) => new TextDecoder().decode(Uint8Array.from(ids));
const tok = (s: string) => Array.from(enc.encode(s));

/** Fake tokenizer over a vocab of strings, where an entry may be raw bytes. */
const vocab: (string | number[])[] = [
  'Hel',
  'lo',
  ' ',
  'STO',
  'P',
  ' more',
  'S',
  'Tx',
  'a',
  [0xf0, 0x9f],
  [0x98, 0x80],
  'END',
];
const pieces = (ids: number[]) =>
  new TextDecoder().decode(
    Uint8Array.from(
      ids.flatMap((i) => (typeof vocab[i] === 'string' ? tok(vocab[i] as string) : (vocab[i] as number[]))),
    ),
  );

const run = (d: IncrementalDetokenizer, ids: number[]) => ids.map((i) => d.push(i));

describe('IncrementalDetokenizer', () => {
  it('holds back a multi-byte character split across tokens', () => {
    const d = new IncrementalDetokenizer(bytes);
    expect(run(d, tok('héllo'))).toEqual(['h', '', 'é', 'l', 'l', 'o']);
    expect(d.finish()).toBe('');
    expect(d.text).toBe('héllo');
  });

  it('emits a 4-byte emoji once both of its tokens are in', () => {
    const d = new IncrementalDetokenizer(pieces);
    expect(run(d, [8, 9, 10, 8])).toEqual(['a', '', '😀', 'a']);
  });

  it('flushes an incomplete character as U+FFFD on finish', () => {
    const d = new IncrementalDetokenizer(bytes);
    expect(run(d, [0x61, 0xe2, 0x82])).toEqual(['a', '', '']);
    expect(d.finish()).toBe('\uFFFD');
    expect(d.text).toBe('a\uFFFD');
  });

  it('stops on a stop string spanning tokens and cuts it off', () => {
    const d = new IncrementalDetokenizer(pieces, [], { stop: ['STOP'] });
    expect(run(d, [0, 1, 2, 3, 4, 5])).toEqual(['Hel', 'lo', ' ', '', '', '']);
    expect(d.stopped).toBe('STOP');
    expect(d.text).toBe('Hello ');
    expect(d.finish()).toBe('');
  });

  it('can keep the stop string', () => {
    const d = new IncrementalDetokenizer(pieces, [], { stop: ['STOP'], includeStopStrInOutput: true });
    expect(run(d, [0, 3, 4, 5]).join('')).toBe('HelSTOP');
    expect(d.text).toBe('HelSTOP');
  });

  it('finds a stop string over three or more byte tokens', () => {
    const d = new IncrementalDetokenizer(bytes, [], { stop: ['é!?'] });
    const out = run(d, tok('xé!?yz'));
    expect(out).toEqual(['x', '', '', '', '', '', '']);
    expect(d.stopped).toBe('é!?');
    expect(d.text).toBe('x');
  });

  it('releases held text once it cannot be a stop string', () => {
    const d = new IncrementalDetokenizer(pieces, [], { stop: ['STOP'] });
    expect(run(d, [8, 2, 6, 7])).toEqual(['a', ' ', '', 'STx']);
    expect(d.stopped).toBeUndefined();
    const e = new IncrementalDetokenizer(pieces, [], { stop: ['STOP'] });
    expect(run(e, [8, 3])).toEqual(['a', '']);
    expect(e.finish()).toBe('STO');
    expect(e.text).toBe('aSTO');
  });

  it('stops at the earliest of several stop strings', () => {
    const d = new IncrementalDetokenizer(pieces, [], { stop: ['more', 'P m'] });
    run(d, [0, 3, 4, 5, 11]);
    expect(d.stopped).toBe('P m');
    expect(d.text).toBe('HelSTO');
  });

  it('uses the prompt tail as context for the first tokens', () => {
    // Like SentencePiece: decoding drops a leading space.
    const words = ['Hi', ' there', ' world'];
    const sp = (ids: number[]) =>
      ids
        .map((i) => words[i])
        .join('')
        .replace(/^ /, '');
    expect(new IncrementalDetokenizer(sp).push(2)).toBe('world');
    const d = new IncrementalDetokenizer(sp, [0, 1]);
    expect(run(d, [2, 1])).toEqual([' world', ' there']);
  });

  it('decodes a bounded window per token', () => {
    let longest = 0;
    const d = new IncrementalDetokenizer(
      (ids) => {
        longest = Math.max(longest, ids.length);
        return bytes(ids);
      },
      tok('a prompt of many tokens'),
      { stop: ['never'] },
    );
    const text = 'ünïcödé streaming text, repeated. '.repeat(30);
    const out = run(d, tok(text)).join('') + d.finish();
    expect(out).toBe(text);
    expect(longest).toBeLessThanOrEqual(8);
  });
});

describe('IncrementalDetokenizer: min_tokens', () => {
  it('ignores stop strings within the first min_tokens tokens (vLLM), then stops on them', () => {
    const d = new IncrementalDetokenizer(bytes, [], { stop: ['b'], minTokens: 2 });
    let text = '';
    for (const id of tok('abab')) text += d.push(id);
    text += d.finish();
    expect(d.stopped).toBe('b');
    expect(text).toBe('aba');
  });
});
