import { describe, expect, it } from 'vitest';
import { PixelBudget } from './pixel-budget.js';

describe('PixelBudget', () => {
  it('holds at most its capacity, and wakes waiters in arrival order', async () => {
    const budget = new PixelBudget(100, 10);
    const a = await budget.acquire(60);
    const order: string[] = [];
    const note = (name: string) => (release: () => void) => {
      order.push(name);
      return release;
    };
    const b = budget.acquire(60).then(note('b'));
    const c = budget.acquire(30).then(note('c'));
    await new Promise((r) => setTimeout(r, 10));
    // c would fit now, but b came first: FIFO, so neither jumps the queue.
    expect(order).toEqual([]);
    expect(budget.inUse).toBe(60);
    a();
    const releaseB = await b;
    const releaseC = await c;
    expect(order).toEqual(['b', 'c']);
    expect(budget.inUse).toBe(90);
    releaseB();
    releaseB(); // a second call does nothing
    releaseC();
    expect(budget.inUse).toBe(0);
  });

  it('lets an image larger than the whole budget run alone', async () => {
    const budget = new PixelBudget(100, 10);
    const release = await budget.acquire(500);
    expect(budget.inUse).toBe(100);
    release();
    expect(budget.inUse).toBe(0);
  });

  it('leaves the queue when aborted, and refuses past maxWaiting as overloaded', async () => {
    const budget = new PixelBudget(100, 1);
    const held = await budget.acquire(100);
    const controller = new AbortController();
    const waiting = budget.acquire(10, controller.signal);
    await expect(budget.acquire(10)).rejects.toMatchObject({
      kind: 'overloaded',
      message: expect.stringMatching(/--max-image-pixels-in-flight/),
    });
    controller.abort(new Error('client gone'));
    await expect(waiting).rejects.toThrow('client gone');
    expect(budget.numWaiting).toBe(0);
    held();
    expect(budget.inUse).toBe(0);
  });
});
