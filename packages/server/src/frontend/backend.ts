import type { ChatMessage, GuidedSpec } from '@switchyard/core';

/** One generation a frontend program asks for: the conversation so far and how to continue it. */
export interface FrontendCall {
  /** The conversation; when `continueFinal`, the last message is an unfinished assistant turn. */
  messages: ChatMessage[];
  continueFinal: boolean;
  /** Images in order of the `{"type": "image"}` parts of `messages`. */
  images: Uint8Array[];
  maxTokens: number;
  temperature?: number;
  stop?: string[];
  guided?: GuidedSpec;
  /** Report the raw logprob of each generated token. */
  logprobs?: boolean;
  seed?: number;
}

export interface FrontendResult {
  text: string;
  /** Raw logprob of each generated token, when asked. */
  tokenLogprobs?: { text: string; logprob: number }[];
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
}

/** Where a program's generations run: the in-process engine or a Switchyard server over HTTP. */
export interface FrontendBackend {
  generate(call: FrontendCall, onText?: (delta: string) => void): Promise<FrontendResult>;
}
