import type { ChatMessage } from '../loader/chat-template.js';
import type { SamplingParams } from '../sampling-params.js';
import type { FinishReason, TokenLogprob } from '../sequence.js';
import type { ImageInput } from './multimodal-input.js';

/** One generation request. Exactly one of `prompt`, `promptIds` and `messages` is given. */
export interface GenerateRequest {
  id?: string;
  /** Raw text, tokenized with the tokenizer's special tokens (as a completion API does). */
  prompt?: string;
  promptIds?: readonly number[];
  /** Chat messages, rendered with the model's chat template and the generation prompt. */
  messages?: ChatMessage[];
  /** Extra variables for the chat template, e.g. `tools` (OpenAI function definitions). */
  chatTemplateKwargs?: Record<string, unknown>;
  /** Continue the final (assistant) message rather than start a new turn (vLLM's continue_final_message). */
  continueFinalMessage?: boolean;
  /**
   * Images: for chat messages, one per `{"type": "image"}` part in order (`image_url` parts carry
   * their own); for a raw prompt, one per image placeholder token in it. Bytes or data: URLs; file
   * paths only from trusted callers such as the CLI.
   */
  images?: ImageInput[];
  /** Sampling settings in camelCase (`maxTokens`); unknown keys are refused with the right name. */
  sampling?: Partial<SamplingParams>;
  /** Lower runs first under the 'priority' queue policy. */
  priority?: number;
  /** Requests with different salts never share prefix-cached KV. */
  cacheSalt?: string;
}

export interface CompletionOutput {
  index: number;
  tokenIds: number[];
  text: string;
  finishReason: FinishReason;
  /** The stop string or stop token id that ended it (vLLM's `stop_reason`); undefined for EOS or length. */
  stopReason?: string | number;
  logprobs?: TokenLogprob[];
}

export interface RequestMetrics {
  /** Arrival to first scheduled step, ms. */
  queueMs: number;
  /** Arrival to first output token, ms. */
  ttftMs: number;
  /** Arrival to finish, ms. */
  e2eMs: number;
  /** Gaps between consecutive output tokens of the first completion, ms. */
  itlMs: number[];
}

export interface GenerateResult {
  id: string;
  promptTokenIds: number[];
  /** With `sampling.promptLogprobs`: one entry per prompt token, null for the first (vLLM's shape). */
  promptLogprobs?: (TokenLogprob | null)[];
  outputs: CompletionOutput[];
  usage: { promptTokens: number; completionTokens: number; cachedTokens: number };
  metrics: RequestMetrics;
}

/** What `Engine.stream` yields: new tokens and text of one completion, then the final result. */
export type StreamEvent =
  | {
      type: 'delta';
      index: number;
      tokenIds: number[];
      text: string;
      logprobs?: TokenLogprob[];
      finishReason?: FinishReason;
      stopReason?: string | number;
    }
  | { type: 'done'; result: GenerateResult };
