import { Template } from '@huggingface/jinja';
import { SwitchyardError } from '../errors.js';

export type ChatContentPart =
  | { type: 'text'; text: string }
  | { type: 'image'; image?: unknown }
  | { type: 'image_url'; image_url: { url: string } };

export interface ChatMessage {
  role: string;
  content: string | ChatContentPart[];
  /** An assistant turn's tool calls (OpenAI shape), for templates that render them. */
  tool_calls?: unknown[];
  /** A `tool` turn's answer to this call id. */
  tool_call_id?: string;
  name?: string;
}

/** A checkpoint's Jinja chat template, rendered as transformers' apply_chat_template does. */
export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    private readonly specialTokens: Record<string, string>,
  ) {
    this.template = new Template(source);
  }

  /** True when the template reads a `tools` variable (it renders function definitions itself). */
  get rendersTools(): boolean {
    return /\btools\b/.test(this.source);
  }

  render(
    messages: ChatMessage[],
    { addGenerationPrompt = true, extra = {} as Record<string, unknown> } = {},
  ): string {
    validateMessages(messages);
    // transformers hands templates image_url parts as {"type": "image"} placeholders.
    const normalized = messages.map((m) =>
      typeof m.content === 'string'
        ? m
        : { ...m, content: m.content.map((p) => (p.type === 'image_url' ? { type: 'image' } : p)) },
    );
    return this.template.render({
      messages: normalized,
      add_generation_prompt: addGenerationPrompt,
      ...this.specialTokens,
      ...extra,
    });
  }
}

function validateMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new SwitchyardError(
      'messages must be a non-empty array of {role, content} objects',
      'invalid_request',
      'messages',
    );
  }
  messages.forEach((m, i) => {
    const ok =
      m &&
      typeof m === 'object' &&
      typeof m.role === 'string' &&
      (typeof m.content === 'string' || Array.isArray(m.content));
    if (!ok) {
      throw new SwitchyardError(
        `messages[${i}] must be an object with a string 'role' and a 'content' that is a string or an array of parts`,
        'invalid_request',
        'messages',
      );
    }
    if (Array.isArray(m.content)) {
      m.content.forEach((p: ChatContentPart, j: number) => {
        const okPart =
          p &&
          ((p.type === 'text' && typeof p.text === 'string') ||
            p.type === 'image' ||
            (p.type === 'image_url' && typeof p.image_url?.url === 'string'));
        if (!okPart) {
          throw new SwitchyardError(
            `messages[${i}].content[${j}] must be {"type":"text","text":…}, {"type":"image_url","image_url":{"url":…}} or {"type":"image"}`,
            'invalid_request',
            'messages',
          );
        }
      });
    }
  });
}
