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
  const template = checkpoint.chatTemplate;
  if (!template) {
    throw new SwitchyardError(
      'this model has no chat template; send a raw prompt instead',
      'invalid_request',
      'messages',
    );
  }
  const text = continueFinal
    ? continueFinalMessage(template, messages, extra)
    : template.render(messages, { extra });
  return checkpoint.tokenizer.encode(text, spec.multimodal?.addSpecialTokens ?? false);
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
