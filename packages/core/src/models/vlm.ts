import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SwitchyardError } from '../errors.js';
import type { Checkpoint, RawConfig } from '../loader/checkpoint.js';
import type { DecoderSpec } from '../model.js';
import { llamaFamilyDecoder } from './llama-family.js';

/**
 * The text decoder of a vision-language checkpoint: its `text_config`, the weight prefix the
 * checkpoint uses (`language_model.model.` or `model.language_model.`), and the differences of
 * the text architecture (Qwen2's q/k/v bias, Qwen3's q/k norm), taking image embeddings.
 */
export function vlmTextDecoder(ckpt: Checkpoint): DecoderSpec {
  const text = ckpt.textConfig;
  const names = ckpt.tensors;
  const prefix = ['language_model.model.', 'model.language_model.', 'model.'].find((p) =>
    names.has(`${p}embed_tokens.weight`),
  );
  if (!prefix) throw new SwitchyardError(`no text embedding weights found in ${ckpt.dir}`, 'model_load');
  const head = ['language_model.lm_head.weight', 'lm_head.weight'].find((n) => names.has(n));
  const type = text.model_type as string | undefined;
  const arch =
    type === 'qwen2'
      ? { qkvBias: true, oBias: false }
      : type === 'qwen3'
        ? { qkNorm: true }
        : ({} as Partial<DecoderSpec>);
  return llamaFamilyDecoder(text, {
    ...arch,
    weightPrefix: prefix,
    lmHeadName: head ?? 'lm_head.weight',
    tieWordEmbeddings:
      head === undefined || Boolean(text.tie_word_embeddings ?? ckpt.config.tie_word_embeddings ?? false),
    imageEmbeds: true,
  });
}

/**
 * The image processor's settings: `preprocessor_config.json` (transformers 4.x) or the
 * `image_processor` entry of `processor_config.json` (5.x); the processor's own fields (image
 * token, patch size, strategy) come along under `processor`.
 */
export function imageProcessorConfig(ckpt: Checkpoint): { image: RawConfig; processor: RawConfig } {
  const read = (f: string): RawConfig =>
    existsSync(join(ckpt.dir, f)) ? JSON.parse(readFileSync(join(ckpt.dir, f), 'utf8')) : {};
  const processor = read('processor_config.json');
  const image = (processor.image_processor as RawConfig | undefined) ?? read('preprocessor_config.json');
  if (Object.keys(image).length === 0) {
    throw new SwitchyardError(
      `no image processor settings in ${ckpt.dir} (preprocessor_config.json or processor_config.json)`,
      'model_load',
    );
  }
  return { image, processor };
}
