import { existsSync, readFileSync } from 'node:fs';
import { SwitchyardError } from '@switchyard/core';

/**
 * Chat templates known by name (SGLang's names), for `--chat-template NAME`. Image parts render as
 * the model's image mark (`image_token`, which the engine passes), then a newline.
 */
export const BUILTIN_CHAT_TEMPLATES: Record<string, string> = {
  chatml:
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}{% else %}{{ image_token }}\n{% endif %}{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
  'vicuna_v1.1':
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% set rest = messages[1:] %}{% else %}{{ 'A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user\\'s questions.' }}{% set rest = messages %}{% endif %}{% for m in rest %}{% if m['role'] == 'user' %}{{ ' USER: ' }}{% else %}{{ ' ASSISTANT: ' }}{% endif %}{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}{% else %}{{ image_token }}\n{% endif %}{% endfor %}{% endif %}{% if m['role'] != 'user' %}{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif %}",
};

/** `--chat-template`: a built-in name or a Jinja file; returns the template source. */
export function resolveChatTemplate(value: string): string {
  if (BUILTIN_CHAT_TEMPLATES[value]) return BUILTIN_CHAT_TEMPLATES[value];
  if (existsSync(value)) return readFileSync(value, 'utf8');
  throw new SwitchyardError(
    `--chat-template ${value} is neither a file nor a built-in template; built-in: ${Object.keys(BUILTIN_CHAT_TEMPLATES).join(', ')}`,
  );
}
