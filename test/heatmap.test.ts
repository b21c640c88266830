import { describe, expect, it } from 'vitest';
import { attentionGridSvg, heatColor, heatmapGridSvg } from '../bench/heatmap';
import { svgToPng } from '../bench/png';

/** The cells of a heatmap SVG: the unit squares in the paths of the colour levels. */
function cells(svg: string): string[] {
  const paths = svg.match(/<path fill="#[0-9a-f]{6}" d="[^"]*"\/>/g) ?? [];
  return paths.flatMap((p) => {
    const d = /d="([^"]*)"/.exec(p)![1]!;
    const squares = d.match(/M\d+ \d+h1v1h-1z/g) ?? [];
    expect(squares.join('')).toBe(d); // nothing else in a cell path
    return squares;
  });
}

/** A PNG's width and height from its IHDR chunk. */
function pngSize(png: Buffer): [number, number] {
  expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return [png.readUInt32BE(16), png.readUInt32BE(20)];
}

describe('heatmap writer', () => {
  it('colours run from white (0) to dark blue (vmax), clamped', () => {
    expect(heatColor(0, 1)).toBe('#ffffff');
    expect(heatColor(1, 1)).toBe('#08306b');
    expect(heatColor(2, 1)).toBe('#08306b');
    expect(heatColor(-1, 1)).toBe('#ffffff');
    expect(heatColor(0.5, 1)).toBe('#8498b5'); // halfway: (255 + 0x30) / 2 = 151.5 → 0x98
  });

  it('a grid draws one cell per value, none for NaN, tokens on both axes; resvg parses and renders it', () => {
    const values = [[0.1, 0.9, NaN], [1, 0, 0.5]];
    const svg = heatmapGridSvg({
      title: 'two & two', subtitle: '<sub>', rowTokens: ['a', ' '], colTokens: ['x', 'y', '\n'],
      panels: [[{ title: 'p0', values }, { title: 'p1', values }]],
    });
    expect(cells(svg)).toHaveLength(2 * 5);
    // Each value in the path of its colour: 1 at row 1, column 0; 0 at row 1, column 1 (in both panels).
    expect(svg.split('<path fill="#08306b" d="M0 1h1v1h-1z"/>')).toHaveLength(3);
    expect(svg.split('<path fill="#ffffff" d="M1 1h1v1h-1z"/>')).toHaveLength(3);
    expect(svg).toContain('two &amp; two');
    expect(svg).toContain('&lt;sub&gt;');
    expect(svg).toContain('>␣</text>'); // a space token is shown as ␣, a newline as ↵
    expect(svg).toContain('>↵</text>');
    const [w, h] = pngSize(svgToPng(svg, 1));
    expect(w).toBe(Number(/width="(\d+)"/.exec(svg)![1]));
    expect(h).toBe(Number(/height="(\d+)"/.exec(svg)![1]));
  });

  it('attention maps under a causal mask: T(T+1)/2 cells per head, layers as rows of panels', () => {
    const T = 6;
    const causalRow = (i: number): number[] => Array.from({ length: T }, (_, j) => (j <= i ? 1 / (i + 1) : 0));
    const head = Array.from({ length: T }, (_, i) => causalRow(i));
    const maps = [[head, head, head], [head, head, head]];
    const tokens = [...'Emma w'];
    const svg = attentionGridSvg({ title: 't', subtitle: 's', maps, tokens });
    expect(cells(svg)).toHaveLength(6 * (T * (T + 1)) / 2);
    expect(svg.match(/layer 1 · head 2/g)).toHaveLength(1);
    expect(cells(attentionGridSvg({ title: 't', subtitle: 's', maps, tokens, causal: false }))).toHaveLength(6 * T * T);
    expect(() => svgToPng(svg)).not.toThrow();
  });

  it('a panel whose size does not fit the tokens is a RangeError naming it', () => {
    expect(() => heatmapGridSvg({ title: '', subtitle: '', rowTokens: ['a'], colTokens: ['a', 'b'], panels: [[{ title: 'bad', values: [[1]] }]] }))
      .toThrow(/panel \[0\]\[0\] 'bad' must be 1 × 2 \(row × column tokens\), got 1 × 1/);
  });

  it('resvg refuses malformed SVG (what the writer must never produce)', () => {
    expect(() => svgToPng('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect></svg>')).toThrow();
  });
});
