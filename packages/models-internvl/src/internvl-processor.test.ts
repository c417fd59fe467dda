import { readFileSync } from 'node:fs';
import type { RgbImage } from '@switchyard/core';
import { processorParity } from '@switchyard/core/testing';
import { describe, expect, it } from 'vitest';
import { internvlProcess, optimalTiledCanvas } from './internvl-processor.js';

const _json = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

processorParity('internvl-tiny', internvlProcess);

describe('processor geometry', () => {
  it('InternVL grid: closest aspect ratio, bigger grid on a tie only while the image fills it', () => {
    expect(optimalTiledCanvas(48, 64, 56, 56, 1, 6)).toEqual([3, 2]);
    expect(optimalTiledCanvas(90, 30, 56, 56, 1, 6)).toEqual([1, 3]);
    expect(optimalTiledCanvas(40, 40, 56, 56, 1, 6)).toEqual([1, 1]);
    expect(optimalTiledCanvas(99, 100, 56, 56, 1, 6)).toEqual([2, 2]);
    expect(optimalTiledCanvas(448, 448, 448, 448, 2, 12)).toEqual([2, 2]);
  });

  const img = (w: number, h: number): RgbImage => {
    const data = new Uint8Array(w * h * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 37 + (i >> 5)) & 255;
    return { width: w, height: h, data };
  };
  it('InternVL without crop_to_patches is one resized tile', () => {
    const out = internvlProcess(img(90, 30), { size: { height: 56, width: 56 }, crop_to_patches: false });
    expect(out.shape).toEqual([1, 3, 56, 56]);
    expect(out.numTiles).toBe(1);
  });
});
