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
  const template = checkpoint.chatTemplate;
  if (!template) {
    throw new SwitchyardError(
      'this model has no chat template; send a raw prompt instead',
      'invalid_request',
      'messages',
    );
  }
  const mm = spec.multimodal;
  // `image_token` lets a template given at launch (--chat-template) place the model's image mark.
  const extra = mm ? { image_token: checkpoint.tokenizer.idToToken(mm.placeholderTokenId) } : {};
  return checkpoint.tokenizer.encode(template.render(messages, { extra }), mm?.addSpecialTokens ?? false);
}
