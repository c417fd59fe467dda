/**
 * A constraint on the output, enforced token by token by a grammar (XGrammar): a JSON schema, any
 * JSON object (`json_object`, OpenAI's json mode) or value (`json`), a regular expression, an EBNF
 * grammar (GBNF-like, XGrammar's dialect), a list of choices, or an XGrammar structural tag.
 */
export type GuidedSpec = (
  | {
      type: 'json_schema';
      schema: Record<string, unknown> | boolean | string;
      strict?: boolean;
      /** Fixed text around the JSON (a tool call's `<tool_call>\n` … `\n</tool_call>`). */
      prefix?: string;
      suffix?: string;
    }
  | { type: 'json_object' }
  | { type: 'json' }
  | { type: 'regex'; pattern: string }
  | { type: 'grammar'; grammar: string }
  | { type: 'choice'; choices: string[] }
  | { type: 'structural_tag'; tag: Record<string, unknown> }
) & {
  /** The request parameter the constraint came from, named in errors (default 'guided'). */
  param?: string;
};

/** Per-request sampling settings, already validated (see `validateSamplingParams`). */
export interface SamplingParams {
  /** 0 means greedy. */
  temperature: number;
  topP: number;
  /** 0 or less disables top-k. */
  topK: number;
  minP: number;
  repetitionPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  seed?: number;
  /** Default: the room the context leaves after the prompt (as vLLM); 16 below is nominal. */
  maxTokens: number;
  /** Number of top alternatives to report per generated token; undefined: no logprobs at all. */
  logprobs?: number;
  stop: string[];
  stopTokenIds: number[];
  ignoreEos: boolean;
  /** Number of completions for the prompt (they share the prompt's KV). */
  n: number;
  /**
   * Output tokens to generate before EOS, `stopTokenIds` or a stop string may end the sequence
   * (vLLM's `min_tokens`): until then those tokens are masked out of the logits.
   */
  minTokens: number;
  /**
   * Added to the logits of these token ids after penalties, before the grammar mask and sampling
   * (OpenAI's `logit_bias`, -100 to 100; -100 in effect bans a token, 100 forces it).
   */
  logitBias?: Record<number, number>;
  /**
   * Logprobs of the prompt's own tokens with this many top alternatives (vLLM's
   * `prompt_logprobs`); undefined: none. The prompt then skips the prefix cache, as in vLLM.
   */
  promptLogprobs?: number;
  /** Constrain the output to a grammar (see `GuidedSpec`). */
  guided?: GuidedSpec;
  /**
   * Jump-forward decoding (default on): where the grammar forces the next characters they are
   * appended without sampling, as SGLang's compressed FSM does. Off when logprobs are requested.
   */
  jumpForward?: boolean;
}

export const DEFAULT_SAMPLING: SamplingParams = {
  temperature: 0,
  topP: 1,
  topK: 0,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  maxTokens: 16,
  stop: [],
  stopTokenIds: [],
  ignoreEos: false,
  n: 1,
  minTokens: 0,
};
