import { describe, expect, it } from 'vitest';
import { dequantizeInt4, quantizeInt4 } from './quantize.js';

describe('int4 quantization (MatMulNBits layout)', () => {
  it('round-trips within half a step of each block, packing two values a byte, low nibble first', () => {
    const N = 3;
    const K = 64;
    const w = Float32Array.from({ length: N * K }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 5)));
    const { packed, scales } = quantizeInt4(w, N, K);
    expect(packed.length).toBe((N * K) / 2);
    expect(scales.length).toBe(N * 2);
    const back = dequantizeInt4(packed, scales, N, K);
    for (let n = 0; n < N; n++) {
      for (let b = 0; b < 2; b++) {
        const block = Array.from(w.subarray(n * K + b * 32, n * K + b * 32 + 32));
        const step = Math.max(...block.map(Math.abs)) / 7;
        for (let i = 0; i < 32; i++)
          expect(Math.abs(back[n * K + b * 32 + i] - block[i])).toBeLessThanOrEqual(
            step * 0.5 + 1e-3 * step + 1e-6,
          );
      }
    }
  });

  it('keeps an all-zero block at zero', () => {
    const { packed, scales } = quantizeInt4(new Float32Array(32), 1, 32);
    expect([...dequantizeInt4(packed, scales, 1, 32)].every((v) => v === 0)).toBe(true);
    expect(packed[0]).toBe(8 | (8 << 4));
  });
});
