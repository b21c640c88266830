/**
 * Runs a computation on a clean pool, then (the same one, or `poisoned`) again with the pool poisoned — every
 * buffer handed back filled with NaN — and expects equal results bit for bit, all finite: nothing read a buffer after
 * it went back.
 */
import { expect } from 'vitest';
import { clearBufferPool, setPoolPoisoning } from '../../lib/workspace';

export function expectSameWhenPoisoned(run: () => number[][], poisonedRun: () => number[][] = run): void {
  clearBufferPool();
  const plain = run();
  clearBufferPool();
  setPoolPoisoning(true);
  let poisoned: number[][];
  try {
    poisoned = poisonedRun();
  } finally {
    setPoolPoisoning(false);
  }
  expect(poisoned.length).toBe(plain.length);
  poisoned.forEach((xs, i) => {
    expect(xs.every(Number.isFinite)).toBe(true);
    expect(xs).toEqual(plain[i]);
  });
}
