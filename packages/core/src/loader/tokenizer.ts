import { Tokenizer } from '@huggingface/tokenizers';

/** The tokenizer of a checkpoint (tokenizer.json + tokenizer_config.json). */
export class TextTokenizer {
  private readonly tok: Tokenizer;
  readonly specialTokens: Record<string, string>;
  /**
   * At most how many UTF-16 code units of input one token stands for, or undefined when the
   * tokenizer may delete input (a stripping normalizer, a whitespace-dropping pre-tokenizer) so no
   * such bound holds. A text of `n` units is then at least `n / maxCharsPerToken` tokens.
   */
  readonly maxCharsPerToken: number | undefined;

  constructor(
    tokenizerJson: object,
    readonly tokenizerConfig: Record<string, unknown>,
  ) {
    this.tok = new Tokenizer(tokenizerJson, tokenizerConfig);
    this.maxCharsPerToken = charsPerTokenBound(tokenizerJson as TokenizerJson);
    this.specialTokens = {};
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
      const v = tokenizerConfig[key];
      const s = typeof v === 'string' ? v : (v as { content?: string } | null)?.content;
      if (s) this.specialTokens[key] = s;
    }
  }

  /** Token ids of `text`; with `addSpecialTokens` the post-processor adds BOS etc. as HF does. */
  encode(text: string, addSpecialTokens = false): number[] {
    if (text === '') return addSpecialTokens ? this.tok.encode('', { add_special_tokens: true }).ids : [];
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], skipSpecialTokens = true): string {
    if (ids.length === 0) return '';
    return this.tok.decode(ids as number[], { skip_special_tokens: skipSpecialTokens });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }
}

interface TokenizerJson {
  normalizer?: Component | null;
  pre_tokenizer?: Component | null;
  model?: { vocab?: Record<string, number> | [string, number][] };
  added_tokens?: { content: string }[];
}

interface Component {
  type: string;
  normalizers?: Component[];
  pretokenizers?: Component[];
  pattern?: { String?: string };
  content?: string;
  behavior?: string;
}

/**
 * How much a normalizer can shrink a text: 1 when it only maps or adds characters, 3 for Unicode
 * composition (a Hangul syllable from three jamo), undefined when it may delete characters.
 */
function normalizerShrink(n: Component | null | undefined): number | undefined {
  if (!n) return 1;
  switch (n.type) {
    case 'Sequence': {
      let f = 1;
      for (const c of n.normalizers ?? []) {
        const g = normalizerShrink(c);
        if (g === undefined) return undefined;
        f *= g;
      }
      return f;
    }
    case 'Prepend':
    case 'Lowercase':
    case 'NFD':
    case 'NFKD':
      return 1;
    case 'NFC':
    case 'NFKC':
      return 3;
    case 'Replace': {
      const from = n.pattern?.String;
      return from !== undefined && typeof n.content === 'string' && n.content.length >= from.length
        ? 1
        : undefined;
    }
    default:
      return undefined;
  }
}

function preTokenizerKeeps(p: Component | null | undefined): boolean {
  if (!p) return true;
  switch (p.type) {
    case 'Sequence':
      return (p.pretokenizers ?? []).every(preTokenizerKeeps);
    case 'ByteLevel':
    case 'Metaspace':
    case 'Digits':
    case 'Punctuation':
      return true;
    case 'Split':
      return p.behavior !== 'Removed';
    default:
      return false;
  }
}

/** See `TextTokenizer.maxCharsPerToken`. */
function charsPerTokenBound(json: TokenizerJson): number | undefined {
  const shrink = normalizerShrink(json.normalizer);
  if (shrink === undefined || !preTokenizerKeeps(json.pre_tokenizer)) return undefined;
  const vocab = json.model?.vocab;
  const pieces = Array.isArray(vocab) ? vocab.map(([p]) => p) : Object.keys(vocab ?? {});
  let longest = 1;
  for (const p of pieces) longest = Math.max(longest, p.length);
  for (const t of json.added_tokens ?? []) longest = Math.max(longest, t.content.length);
  // A byte-level token's characters are bytes, each at least one UTF-16 unit's worth of input.
  return longest * shrink;
}
