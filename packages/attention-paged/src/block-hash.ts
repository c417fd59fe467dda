/** Hash of one block: its prefix keys `keys[start, end)` chained on the parent's identity. */
export type BlockHashFn = (parent: number, keys: readonly number[], start: number, end: number) => number;

/**
 * A 53-bit hash (two murmur3-style 32-bit lanes) of a block's keys (safe integers) chained on
 * `parent`, an integer naming the parent block. Not cryptographic: a hit is always confirmed against the stored keys.
 */
export const hashBlock: BlockHashFn = (parent, keys, start, end) => {
  let a = (parent >>> 0) ^ 0x811c9dc5;
  let b = Math.floor(parent / 0x100000000) ^ 0x9e3779b9;
  for (let i = start; i < end; i++) {
    const k = keys[i];
    a = mix(a, k | 0);
    b = mix(b, (k | 0) ^ Math.floor(k / 0x100000000) ^ 0x5bd1e995);
  }
  return (finish(b, end - start) >>> 11) * 0x100000000 + finish(a, end - start);
};

function mix(h: number, k: number): number {
  let x = Math.imul(k, 0xcc9e2d51);
  x = Math.imul((x << 15) | (x >>> 17), 0x1b873593);
  const y = h ^ x;
  return (Math.imul((y << 13) | (y >>> 19), 5) + 0xe6546b64) | 0;
}

function finish(h: number, n: number): number {
  let x = h ^ n;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}
