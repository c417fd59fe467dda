import type { Sequence } from './sequence.js';

/**
 * The keys under which a sequence's tokens are cached. Equal to the token ids, except where an
 * image stands: its placeholder positions get keys derived from the image's content hash and the
 * position inside the image, so two prompts with the same text and different images never share
 * KV past the text before the first image. Keys of placeholders are negative, so they never equal
 * a vocabulary id.
 */
export function prefixKeys(seq: Sequence, end = seq.length): number[] {
  const keys = new Array<number>(end);
  for (let i = 0; i < end; i++) keys[i] = seq.tokenAt(i);
  for (const item of seq.mm) {
    // 52 bits of the content hash, so distinct images practically never share keys.
    const base = hashToInt(item.hash) * 2 ** 20 + (hashToInt(item.hash, 0x9747b28c) & 0xfffff);
    for (let j = 0; j < item.length && item.offset + j < end; j++) {
      keys[item.offset + j] = -1 - ((base + j * 0x9e3779b1) % 2 ** 52);
    }
  }
  return keys;
}

/** 32-bit FNV-1a of a string (from another offset basis, for an independent second hash). */
export function hashToInt(s: string, basis = 0x811c9dc5): number {
  let h = basis;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
