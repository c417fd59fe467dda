import { SwitchyardError } from '../errors.js';
import type { ChatMessage, ChatTemplate } from '../loader/chat-template.js';
import type { Checkpoint } from '../loader/checkpoint.js';
import type { ModelSpec } from '../model.js';

/**
 * The token ids of chat messages as the engine runs them: the checkpoint's chat template with the
 * generation prompt, tokenized with special tokens only where the model's processor adds them
 * (a VLM's processor may; a text chat template carries its own BOS). The one chat renderer: the
 * engine and the server's `/tokenize` both call it, so their token counts agree.
 */
export function chatPromptIds(
  checkpoint: Checkpoint,
  spec: ModelSpec,
  messages: ChatMessage[],
  /** Extra template variables, e.g. `tools`. */
  extra: Record<string, unknown> = {},
  /** Continue the last (assistant) message instead of opening a new turn (vLLM's continue_final_message). */
  continueFinal = false,
): number[] {
  return checkpoint.tokenizer.encode(
    chatPromptText(checkpoint, messages, { ...imageTokenExtra(checkpoint, spec), ...extra }, continueFinal),
    chatSpecialTokens(spec),
  );
}

/**
 * `image_token`: lets a template given at launch (--chat-template) place the model's image mark
 * (empty for a text-only model).
 */
export function imageTokenExtra(checkpoint: Checkpoint, spec: ModelSpec): Record<string, unknown> {
  const mm = spec.multimodal;
  return mm ? { image_token: checkpoint.tokenizer.idToToken(mm.placeholderTokenId) } : {};
}

/** The rendered chat prompt that `chatPromptIds` tokenizes. */
export function chatPromptText(
  checkpoint: Checkpoint,
  messages: ChatMessage[],
  extra: Record<string, unknown> = {},
  continueFinal = false,
): string {
  const template = checkpoint.chatTemplate;
  if (!template) {
    throw new SwitchyardError(
      'this model has no chat template; send a raw prompt instead',
      'invalid_request',
      'messages',
    );
  }
  return continueFinal
    ? continueFinalMessage(template, messages, extra)
    : template.render(messages, { extra });
}

const SENTINEL = '\u2063SWITCHYARD_CONTINUE\u2063';

/**
 * The prompt that continues the final message: the template rendered without a generation prompt
 * and cut where that message's content begins (found by a sentinel), then the content itself —
 * so the text after it (the end-of-turn tokens) is dropped and the model writes on.
 */
function continueFinalMessage(
  template: ChatTemplate,
  messages: ChatMessage[],
  extra: Record<string, unknown>,
): string {
  const last = messages.at(-1);
  if (!last || typeof last.content !== 'string') {
    throw new SwitchyardError(
      'continue_final_message needs a final message whose content is a string',
      'invalid_request',
      'messages',
    );
  }
  const text = template.render([...messages.slice(0, -1), { ...last, content: SENTINEL }], {
    addGenerationPrompt: false,
    extra,
  });
  const i = text.lastIndexOf(SENTINEL);
  if (i < 0) {
    throw new SwitchyardError(
      "continue_final_message: the chat template does not render the final message's content",
      'invalid_request',
      'messages',
    );
  }
  return text.slice(0, i) + last.content;
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
