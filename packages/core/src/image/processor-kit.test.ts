import { describe, expect, it } from 'vitest';
import { shortestEdgeSize } from './processor-kit.js';

describe('processor geometry', () => {
  it('shortest edge: the long side truncated like transformers', () => {
    expect(shortestEdgeSize(48, 64, 32)).toEqual([32, 42]);
    expect(shortestEdgeSize(90, 30, 32)).toEqual([96, 32]);
    expect(shortestEdgeSize(60, 100, 32)).toEqual([32, 53]);
  });
});
