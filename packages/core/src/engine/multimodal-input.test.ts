import { describe, expect, it } from 'vitest';
import type { MultimodalSpec } from '../model.js';
import { imageTokenIds, refuseImageTokens } from './multimodal-input.js';

/**
 * A model whose placeholder expands to start + context × N + end (InternVL's shape): `<image>` (9)
 * becomes `<img>` (10) + `<IMG_CONTEXT>` (11) × N + `</img>` (12).
 */
const wrappedSpec = {
  placeholderTokenId: 9,
  expand: (image: { numTokens: number }) => ({
    ids: [10, ...new Array(image.numTokens).fill(11), 12],
    offset: 1,
  }),
} as unknown as MultimodalSpec;
const names: Record<number, string> = { 9: '<image>', 10: '<img>', 11: '<IMG_CONTEXT>', 12: '</img>' };
const tokenizer = { idToToken: (id: number) => names[id] };

describe('image tokens typed as text', () => {
  it('knows every token an image may become', () => {
    expect([...imageTokenIds(wrappedSpec)].sort((a, b) => a - b)).toEqual([9, 10, 11, 12]);
  });

  it.each([
    [[1, 11, 2], 1, /"<IMG_CONTEXT>" \(id 11\), which only images may fill/],
    [[1, 10, 2], 0, /"<img>"/],
    [[1, 9, 2], 0, /1 image placeholder\(s\) "<image>" but the request has no image/],
  ])('refuses %j with %i images', (ids, numImages, message) => {
    expect(() => refuseImageTokens(ids, wrappedSpec, tokenizer, numImages)).toThrow(message);
  });

  it('lets plain text through, and placeholders that images fill', () => {
    expect(() => refuseImageTokens([1, 2, 3], wrappedSpec, tokenizer, 0)).not.toThrow();
    expect(() => refuseImageTokens([1, 9, 9, 3], wrappedSpec, tokenizer, 2)).not.toThrow();
  });
});
