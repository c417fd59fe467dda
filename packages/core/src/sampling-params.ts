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
  maxTokens: number;
  /** Number of top alternatives to report per generated token; undefined: no logprobs at all. */
  logprobs?: number;
  stop: string[];
  stopTokenIds: number[];
  ignoreEos: boolean;
  /** Number of completions for the prompt (they share the prompt's KV). */
  n: number;
  /** EOS and stop token ids are masked until this many tokens were generated. */
  minTokens: number;
  /** Added to the logits of these token ids before sampling (OpenAI's `logit_bias`, -100..100). */
  logitBias?: Record<number, number>;
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
