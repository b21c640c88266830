/**
 * Heatmaps as hand-written SVG (the article's attention figures): a grid of panels, each a matrix drawn cell by
 * cell on a white-to-blue scale of {@link LEVELS} levels, with the tokens along both axes of the first column and last
 * row of panels. A cell is a unit square `M<column> <row>h1v1h-1z` in the path of its level; a NaN value draws no
 * cell (the causal mask's upper triangle stays grey), so a map of T tokens under a causal mask is T·(T + 1)/2 cells.
 */
import { esc } from './charts';

/** One matrix of a grid. */
export interface HeatmapPanel {
  title: string;
  /** rows × columns; every row as long as `colTokens`; NaN: no cell. */
  values: number[][];
}

/** Colour levels of a heatmap (values are rounded to the nearest). */
export const LEVELS = 64;

/** The colour of a value in [0, vmax]: white → dark blue (clamped). */
export function heatColor(v: number, vmax: number): string {
  const t = Math.min(1, Math.max(0, v / vmax));
  // From #ffffff to #08306b (the end of matplotlib's "Blues").
  const ch = (lo: number): string => Math.round(255 + (lo - 255) * t).toString(16).padStart(2, '0');
  return `#${ch(0x08)}${ch(0x30)}${ch(0x6b)}`;
}

/**
 * A grid of heatmaps (`panels[r][c]`) sharing the row and column tokens, with a title, a subtitle and a colour bar.
 * Every panel of a grid row must have `rowTokens.length` rows of `colTokens.length` values.
 * @throws RangeError naming the panel whose size does not match the tokens.
 */
export function heatmapGridSvg(o: {
  title: string;
  subtitle: string;
  panels: HeatmapPanel[][];
  rowTokens: string[];
  colTokens: string[];
  /** Value of the darkest colour (default 1: attention probabilities). */
  vmax?: number;
  /** Side of a cell in pixels (default: 12, or smaller so a panel is at most 300 px wide). */
  cell?: number;
}): string {
  const R = o.rowTokens.length;
  const C = o.colTokens.length;
  o.panels.forEach((row, r) => row.forEach((p, c) => {
    if (p.values.length !== R || p.values.some((v) => v.length !== C)) {
      throw new RangeError(`heatmapGridSvg: panel [${r}][${c}] '${p.title}' must be ${R} × ${C} (row × column tokens), got ` +
        `${p.values.length} × ${p.values[0]?.length ?? 0}`);
    }
  }));
  const vmax = o.vmax ?? 1;
  const cell = o.cell ?? Math.max(4, Math.min(12, Math.floor(300 / Math.max(R, C))));
  const labelW = 14;
  const gap = 22;
  const pw = C * cell;
  const ph = R * cell;
  const cols = Math.max(...o.panels.map((r) => r.length), 1);
  const left = 30;
  const top = 64;
  const W = left + labelW + cols * (pw + gap) + 70;
  const H = top + o.panels.length * (ph + gap + 14) + labelW + 20;
  const fontSize = Math.max(7, Math.min(11, cell - 1));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(o.title)}</text>`,
    `<text x="${W / 2}" y="42" text-anchor="middle" fill="#555">${esc(o.subtitle)}</text>`,
  ];
  const token = (s: string): string => esc(s === ' ' ? '␣' : s === '\n' ? '↵' : s);
  o.panels.forEach((row, r) => {
    const y0 = top + r * (ph + gap + 14) + 14;
    row.forEach((p, c) => {
      const x0 = left + labelW + c * (pw + gap);
      out.push(`<text x="${x0 + pw / 2}" y="${y0 - 4}" text-anchor="middle" font-weight="bold" font-size="11">${esc(p.title)}</text>`);
      // One path per colour level, one unit square per cell, scaled to the cell size: a tenth of the bytes of a
      // rect per cell (a 16-head map of 30 tokens is ~7,400 cells).
      const levels = new Map<number, string[]>();
      p.values.forEach((vals, i) => vals.forEach((v, j) => {
        if (Number.isNaN(v)) return;
        const level = Math.round(Math.min(1, Math.max(0, v / vmax)) * (LEVELS - 1));
        let cellsOfLevel = levels.get(level);
        if (!cellsOfLevel) levels.set(level, (cellsOfLevel = []));
        cellsOfLevel.push(`M${j} ${i}h1v1h-1z`);
      }));
      out.push(`<rect x="${x0}" y="${y0}" width="${pw}" height="${ph}" fill="#f4f4f4"/>`);
      out.push(`<g transform="translate(${x0},${y0}) scale(${cell})" shape-rendering="crispEdges">`);
      for (const [level, d] of [...levels].sort((x, y) => x[0] - y[0])) {
        out.push(`<path fill="${heatColor(level / (LEVELS - 1), 1)}" d="${d.join('')}"/>`);
      }
      out.push('</g>');
      out.push(`<rect x="${x0}" y="${y0}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
      // Row tokens left of the first panel of a row, column tokens under the panels of the last row.
      if (c === 0) {
        out.push(`<g font-family="monospace" font-size="${fontSize}" text-anchor="end">` +
          o.rowTokens.map((t, i) => `<text x="${x0 - 3}" y="${y0 + i * cell + cell * 0.8}">${token(t)}</text>`).join('') + '</g>');
      }
      if (r === o.panels.length - 1) {
        out.push(`<g font-family="monospace" font-size="${fontSize}" text-anchor="middle">` +
          o.colTokens.map((t, j) => `<text x="${x0 + j * cell + cell / 2}" y="${y0 + ph + fontSize + 2}">${token(t)}</text>`).join('') + '</g>');
      }
    });
  });
  // Colour bar.
  const bx = W - 50;
  const by = top + 14;
  const bh = Math.min(200, H - by - 40);
  out.push(`<defs><linearGradient id="heat" x1="0" y1="1" x2="0" y2="0"><stop offset="0" stop-color="${heatColor(0, 1)}"/><stop offset="1" stop-color="${heatColor(1, 1)}"/></linearGradient></defs>`);
  out.push(`<rect x="${bx}" y="${by}" width="12" height="${bh}" fill="url(#heat)" stroke="#999"/>`);
  out.push(`<text x="${bx + 16}" y="${by + 8}" font-size="10">${Number(vmax.toPrecision(3))}</text>`);
  out.push(`<text x="${bx + 16}" y="${by + bh}" font-size="10">0</text>`);
  out.push('</svg>', '');
  return out.join('\n');
}

/**
 * Attention maps `maps[layer][head]` (T×T probabilities of one sequence, query rows, key columns) as a grid:
 * one row of panels per layer, one panel per head. Under `causal` (default true) the cells above the diagonal
 * (always 0) are not drawn.
 */
export function attentionGridSvg(o: { title: string; subtitle: string; maps: number[][][][]; tokens: string[]; causal?: boolean }): string {
  const causal = o.causal ?? true;
  const panels = o.maps.map((layer, l) => layer.map((m, h) => ({
    title: `layer ${l} · head ${h}`,
    values: m.map((row, i) => row.map((v, j) => (causal && j > i ? NaN : v))),
  })));
  return heatmapGridSvg({ title: o.title, subtitle: o.subtitle, panels, rowTokens: o.tokens, colTokens: o.tokens });
}
