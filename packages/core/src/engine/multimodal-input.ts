import { readFileSync } from 'node:fs';
import { SwitchyardError } from '../errors.js';
import { decodeDataUrl } from '../image/data-url.js';
import type { ChatMessage } from '../loader/chat-template.js';
import type { MultimodalSpec, ProcessedImage } from '../model.js';

/** An image as a request carries it: raw bytes, a data: URL, or (command line) a file path. */
export type ImageInput = Uint8Array | string;

/**
 * The images of a request in prompt order: each chat part's own `image_url`, or for a bare
 * `{"type": "image"}` part the next of `images`; for raw prompts, `images` as given.
 */
export function collectImages(
  messages: ChatMessage[] | undefined,
  images: readonly ImageInput[] = [],
): ImageInput[] {
  if (!messages) return [...images];
  const out: ImageInput[] = [];
  let next = 0;
  for (const m of messages) {
    if (typeof m.content === 'string') continue;
    for (const part of m.content) {
      if (part.type === 'image_url') out.push(part.image_url.url);
      else if (part.type === 'image') {
        if (next >= images.length) {
          throw new SwitchyardError(
            `the messages have more {"type": "image"} parts than the ${images.length} image(s) given; pass one image per part`,
            'invalid_request',
            'image',
          );
        }
        out.push(images[next++]);
      }
    }
  }
  if (next < images.length) {
    throw new SwitchyardError(
      `${images.length} images were given but the messages have places for ${next}`,
      'invalid_request',
      'image',
    );
  }
  return out;
}

/** The bytes of an image input. File paths are for trusted callers (the CLI); servers pass bytes. */
export function imageBytes(input: ImageInput): Uint8Array {
  if (typeof input !== 'string') return input;
  if (/^data:/i.test(input)) return decodeDataUrl(input, { param: 'image' });
  try {
    return new Uint8Array(readFileSync(input));
  } catch {
    throw new SwitchyardError(`cannot read the image file ${input}`, 'invalid_request', 'image');
  }
}

/**
 * Replaces each image placeholder token in `ids` by the image's expansion (the processor's
 * `<image>` × N, or `<img>` + `<IMG_CONTEXT>` × N + `</img>`); returns the new ids and where each
 * image's embeddings go.
 */
export function expandPlaceholders(
  ids: readonly number[],
  images: readonly ProcessedImage[],
  mm: MultimodalSpec,
): { ids: number[]; places: { offset: number; length: number }[] } {
  const count = ids.filter((t) => t === mm.placeholderTokenId).length;
  if (count !== images.length) {
    throw new SwitchyardError(
      `the prompt has ${count} image place(s) but ${images.length} image(s) were given; give one image per place`,
      'invalid_request',
      'image',
    );
  }
  const out: number[] = [];
  const places: { offset: number; length: number }[] = [];
  let k = 0;
  for (const t of ids) {
    if (t !== mm.placeholderTokenId) {
      out.push(t);
      continue;
    }
    const image = images[k++];
    const { ids: expansion, offset } = mm.expand(image);
    places.push({ offset: out.length + offset, length: image.numTokens });
    out.push(...expansion);
  }
  return { ids: out, places };
}

/** The ids a model keeps for images: the placeholder, and what an image expands to (`<img>`, `<IMG_CONTEXT>`, ...). */
export function imageTokenIds(mm: MultimodalSpec): Set<number> {
  const probe = mm.expand({ pixelValues: new Float32Array(0), shape: [], imageSize: [1, 1], numTokens: 1 });
  return new Set([mm.placeholderTokenId, ...probe.ids]);
}

/**
 * Refuses a prompt whose text carries image tokens no image fills: a placeholder (`<image>`) when
 * the request has no image, or any token an image expands to (`<IMG_CONTEXT>`, `<img>`) typed as
 * text. Passed through, they would feed the model embeddings it was never trained to see as text.
 * (With images, a placeholder count that differs from the images is refused by `expandPlaceholders`.)
 */
export function refuseImageTokens(
  ids: readonly number[],
  mm: MultimodalSpec,
  tokenizer: { idToToken(id: number): string | undefined },
  numImages: number,
): void {
  const reserved = imageTokenIds(mm);
  let placeholders = 0;
  for (const t of ids) {
    if (!reserved.has(t)) continue;
    if (t === mm.placeholderTokenId) {
      placeholders++;
      continue;
    }
    throw new SwitchyardError(
      `the prompt's text contains the image token ${JSON.stringify(tokenizer.idToToken(t) ?? String(t))} (id ${t}), which only images may fill; remove it from the text and send the image as an image part`,
      'invalid_request',
      'prompt',
    );
  }
  if (numImages === 0 && placeholders > 0) {
    const name = JSON.stringify(tokenizer.idToToken(mm.placeholderTokenId) ?? String(mm.placeholderTokenId));
    throw new SwitchyardError(
      `the prompt contains ${placeholders} image placeholder(s) ${name} but the request has no image; attach one image per placeholder, or remove ${name} from the text`,
      'invalid_request',
      'prompt',
    );
  }
}
