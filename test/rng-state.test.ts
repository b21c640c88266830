import { describe, expect, it } from 'vitest';
import { getRngState, manualSeed, nn, Rng, setRngState } from '../lib/index';

describe('generator state (Rng.getState / setState, getRngState / setRngState)', () => {
  it('a generator set to a saved state continues with the same numbers, a pending normal included', () => {
    const a = new Rng(42);
    for (let i = 0; i < 5; i++) a.nextUint32();
    a.normal(); // leaves the second value of the pair pending
    const state = a.getState();
    expect(state.spare).not.toBeNull();
    expect(JSON.parse(JSON.stringify(state))).toEqual(state);
    const want = [a.normal(), a.nextUint32(), a.uniform(), a.normal(), a.normal()];
    const b = new Rng(7).setState(state);
    expect([b.normal(), b.nextUint32(), b.uniform(), b.normal(), b.normal()]).toEqual(want);
    expect(state.s.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32)).toBe(true);
    expect(new Rng(1).getState().spare).toBeNull();
  });

  it('the process-wide generator: initial weights after a restore are those after the save', () => {
    manualSeed(3);
    new nn.Linear({ inFeatures: 4, outFeatures: 4 });
    const saved = getRngState();
    const want = new nn.Linear({ inFeatures: 4, outFeatures: 4 }).weight.data;
    manualSeed(99);
    setRngState(saved);
    expect(new nn.Linear({ inFeatures: 4, outFeatures: 4 }).weight.data).toEqual(want);
  });

  it('a bad state is refused naming the field, and the generator is left as it was', () => {
    const r = new Rng(5);
    const before = r.getState();
    expect(() => r.setState({ s: [1, 2, 3], spare: null } as never)).toThrow(/Rng.setState: field 's' must be 4 integers in \[0, 2\^32\), got \[1,2,3\]/);
    expect(() => r.setState({ s: [1, 2, 3, 2 ** 32], spare: null })).toThrow(TypeError);
    expect(() => r.setState({ s: [1, 2, 3, 4], spare: 'x' } as never)).toThrow(/field 'spare' must be a finite number or null, got "x"/);
    expect(() => r.setState({ s: [0, 0, 0, 0], spare: null })).toThrow(RangeError);
    expect(() => r.setState(null as never)).toThrow(/argument 'state' must be an object \{ s, spare \}, got null/);
    expect(r.getState()).toEqual(before);
    const g = getRngState();
    expect(() => setRngState({ s: [0, 0, 0, 0], spare: null })).toThrow(/all zeros/);
    expect(getRngState()).toEqual(g);
  });
});
