import { SwitchyardError } from '../errors.js';
import type { ChatMessage } from '../loader/chat-template.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import type { ModelSpec } from '../model.js';

/**
 * The token ids of chat messages as the engine runs them: the checkpoint's chat template with the
 * generation prompt, tokenized with special tokens only where the model's processor adds them
 * (a VLM's processor may; a text chat template carries its own BOS). The one chat renderer: the
 * engine and the server's `/tokenize` both call it, so their token counts agree.
 */
export function chatPromptIds(checkpoint: Checkpoint, spec: ModelSpec, messages: ChatMessage[]): number[] {
  return checkpoint.tokenizer.encode(chatPromptText(checkpoint, messages), chatSpecialTokens(spec));
}

/** The rendered chat prompt that `chatPromptIds` tokenizes. */
export function chatPromptText(checkpoint: Checkpoint, messages: ChatMessage[]): string {
  const template = checkpoint.chatTemplate;
  if (!template) {
    throw new SwitchyardError(
      'this model has no chat template; send a raw prompt instead',
      'invalid_request',
      'messages',
    );
  }
  return template.render(messages);
}

/** Whether `chatPromptIds` tokenizes with special tokens (a VLM's processor may add BOS). */
export function chatSpecialTokens(spec: ModelSpec): boolean {
  return spec.multimodal?.addSpecialTokens ?? false;
}

/** The characters of the messages' text: the rendered prompt holds at least these. */
export function messageChars(messages: readonly ChatMessage[]): number {
  let n = 0;
  for (const m of messages) {
    const content = (m as { content?: unknown }).content;
    if (typeof content === 'string') n += content.length;
    else if (Array.isArray(content)) {
      for (const p of content) {
        const text = (p as { text?: unknown }).text;
        if (typeof text === 'string') n += text.length;
      }
    }
  }
  return n;
}
