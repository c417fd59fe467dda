import { floatToHalf, halfToFloat } from '../loader/safetensors.js';

/**
 * Symmetric int4 quantization in `com.microsoft.MatMulNBits` layout for a weight of N rows
 * (outputs) by K columns (inputs): `packed` [N, K/block, block/2] bytes, two values a byte (the
 * lower k in the low nibble), `scales` [N × K/block] in fp16; the zero point is the default 8, so
 * a value is (q − 8) × scale.
 */
export function quantizeInt4(
  w: Float32Array,
  N: number,
  K: number,
  block = 32,
): { packed: Uint8Array; scales: Uint16Array } {
  if (K % block !== 0)
    throw new Error(`int4 quantization needs K (${K}) to be a multiple of the block size ${block}`);
  const blocks = K / block;
  const packed = new Uint8Array((N * K) / 2);
  const scales = new Uint16Array(N * blocks);
  const q = new Uint8Array(block);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < blocks; b++) {
      const base = n * K + b * block;
      let max = 0;
      for (let i = 0; i < block; i++) max = Math.max(max, Math.abs(w[base + i]));
      const half = floatToHalf(max / 7);
      const scale = halfToFloat(half);
      scales[n * blocks + b] = half;
      const inv = scale === 0 ? 0 : 1 / scale;
      for (let i = 0; i < block; i++) {
        const v = Math.round(w[base + i] * inv) + 8;
        q[i] = v < 0 ? 0 : v > 15 ? 15 : v;
      }
      const out = (n * blocks + b) * (block / 2);
      for (let i = 0; i < block / 2; i++) packed[out + i] = q[2 * i] | (q[2 * i + 1] << 4);
    }
  }
  return { packed, scales };
}

/** The inverse, for tests: [N × K] floats. */
export function dequantizeInt4(
  packed: Uint8Array,
  scales: Uint16Array,
  N: number,
  K: number,
  block = 32,
): Float32Array {
  const out = new Float32Array(N * K);
  const blocks = K / block;
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < blocks; b++) {
      const scale = halfToFloat(scales[n * blocks + b]);
      for (let i = 0; i < block; i++) {
        const byte = packed[(n * blocks + b) * (block / 2) + (i >> 1)];
        const q = i & 1 ? byte >> 4 : byte & 15;
        out[n * K + b * block + i] = (q - 8) * scale;
      }
    }
  }
  return out;
}
