import { Tokenizer } from '@huggingface/tokenizers';

/** The tokenizer of a checkpoint (tokenizer.json + tokenizer_config.json). */
export class TextTokenizer {
  private readonly tok: Tokenizer;
  readonly specialTokens: Record<string, string>;

  constructor(
    tokenizerJson: object,
    readonly tokenizerConfig: Record<string, unknown>,
  ) {
    this.tok = new Tokenizer(tokenizerJson, tokenizerConfig);
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
