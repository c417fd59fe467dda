import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpoint } from './checkpoint.js';
import { TextTokenizer } from './tokenizer.js';

const MODELS = join(import.meta.dirname, '..', '..', '..', '..', 'models');

const bpe = (normalizer: unknown, pre_tokenizer: unknown) => ({
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [{ id: 3, content: '<|a-long-added-token|>', special: true }],
  normalizer,
  pre_tokenizer,
  post_processor: null,
  decoder: null,
  model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2 }, merges: ['a b'] },
});

describe('TextTokenizer.maxCharsPerToken', () => {
  it('is the longest token of the demo tokenizers, and every text respects it', () => {
    for (const name of ['switchyard-demo-text', 'switchyard-demo-vision']) {
      const tok = Checkpoint.open(join(MODELS, name)).tokenizer;
      expect(tok.maxCharsPerToken).toBe(72);
      for (const text of [
        'hello world '.repeat(200),
        ' '.repeat(3000),
        '\u{1F600}'.repeat(500),
        'déjà vu\n\t'.repeat(100),
      ]) {
        expect(tok.encode(text).length).toBeGreaterThanOrEqual(text.length / tok.maxCharsPerToken!);
      }
    }
  });

  it('counts added tokens, and triples under Unicode composition', () => {
    expect(new TextTokenizer(bpe(null, null), {}).maxCharsPerToken).toBe(22);
    expect(new TextTokenizer(bpe({ type: 'NFC' }, null), {}).maxCharsPerToken).toBe(66);
  });

  it('gives no bound when the tokenizer may delete input', () => {
    expect(
      new TextTokenizer(bpe({ type: 'Strip', strip_left: true, strip_right: true }, null), {})
        .maxCharsPerToken,
    ).toBeUndefined();
    expect(new TextTokenizer(bpe(null, { type: 'WhitespaceSplit' }), {}).maxCharsPerToken).toBeUndefined();
    const shrinking = { type: 'Replace', pattern: { String: '  ' }, content: ' ' };
    expect(new TextTokenizer(bpe(shrinking, null), {}).maxCharsPerToken).toBeUndefined();
  });
});
