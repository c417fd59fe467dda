import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SwitchyardError } from '../../errors.js';

/** What XGrammar's `TokenizerInfo` needs: the raw vocabulary by id and how to decode it. */
export interface TokenizerVocab {
  /** Raw token strings of tokenizer.json by id ("" for gaps and for special tokens). */
  encodedVocab: string[];
  vocabType: 'byte_level' | 'byte_fallback' | 'raw';
  prependSpace: boolean;
  /** Size of the logits row (config.json's vocab_size, may exceed the tokenizer's). */
  vocabSize: number;
  /** Tokens that end a guided output (EOS): allowed only where the grammar may end. */
  stopIds: number[];
  /** Identifies the tokenizer in grammar cache keys. */
  key: string;
}

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number> | [string, number][]; byte_fallback?: boolean };
  added_tokens?: { id: number; content: string; special?: boolean }[];
  decoder?: { type?: string; decoders?: { type?: string }[] } | null;
  normalizer?: unknown;
  pre_tokenizer?: unknown;
}

const BYTE_TOKEN = /^<0x[0-9A-Fa-f]{2}>$/;

/** XGrammar's Python side picks the type from the decoder: ByteLevel, or ByteFallback (+ "▁" spaces). */
function vocabTypeOf(tj: TokenizerJson): TokenizerVocab['vocabType'] {
  const decoders = tj.decoder?.type === 'Sequence' ? (tj.decoder.decoders ?? []) : [tj.decoder ?? {}];
  const types = decoders.map((d) => d?.type);
  if (types.includes('ByteLevel')) return 'byte_level';
  if (types.includes('ByteFallback') || tj.model?.byte_fallback) return 'byte_fallback';
  return 'raw';
}

/**
 * Reads `tokenizer.json` of a checkpoint folder into XGrammar's vocabulary form. Special added
 * tokens become "" (XGrammar would otherwise let `<|im_start|>` appear inside a JSON string), except
 * the `<0xNN>` byte tokens of a byte-fallback vocabulary, which are text. Stop ids are passed
 * separately so that EOS stays allowed where the grammar ends.
 */
export function readTokenizerVocab(
  dir: string,
  vocabSize: number,
  stopIds: readonly number[],
): TokenizerVocab {
  let tj: TokenizerJson;
  try {
    tj = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  } catch (e) {
    throw new SwitchyardError(
      `guided decoding needs ${join(dir, 'tokenizer.json')}: ${(e as Error).message}`,
      'model_load',
    );
  }
  return tokenizerVocab(tj, vocabSize, stopIds, dir);
}

export function tokenizerVocab(
  tj: TokenizerJson,
  vocabSize: number,
  stopIds: readonly number[],
  name = 'tokenizer',
): TokenizerVocab {
  const vocabType = vocabTypeOf(tj);
  const encodedVocab = new Array<string>(vocabSize).fill('');
  const vocab = tj.model?.vocab ?? {};
  const entries: [string, number][] = Array.isArray(vocab)
    ? vocab.map(([s], i) => [s, i] as [string, number])
    : Object.entries(vocab);
  for (const [s, id] of entries) if (id >= 0 && id < vocabSize) encodedVocab[id] = s;
  for (const t of tj.added_tokens ?? []) {
    if (t.id < 0 || t.id >= vocabSize) continue;
    const isByte = vocabType === 'byte_fallback' && BYTE_TOKEN.test(t.content);
    encodedVocab[t.id] = t.special && !isByte ? '' : t.content;
  }
  const stops = [...new Set(stopIds)].filter((id) => id >= 0 && id < vocabSize);
  return {
    encodedVocab,
    vocabType,
    // Llama 2 style tokenizers prepend "▁" to the text (a Prepend normalizer or a Metaspace pre-tokenizer).
    prependSpace: /"(Prepend|Metaspace)"/.test(
      JSON.stringify([tj.normalizer ?? null, tj.pre_tokenizer ?? null]),
    ),
    vocabSize,
    stopIds: stops,
    key: `${name}|${vocabSize}|${vocabType}|${stops.join(',')}|${encodedVocab.length}`,
  };
}
