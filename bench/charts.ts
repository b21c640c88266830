/**
 * The hand-written SVG chart of the load and serving benchmarks (no chart
 * library): two side-by-side panels of lines over a log2 x axis (a
 * concurrency), with a title, a subtitle, a legend and an optional footer.
 */

/** One line of a panel. */
export interface Series {
  label: string;
  color: string;
  /** [x, y] points; non-finite y are left out. */
  points: [number, number][];
  /** Tooltip of a point. */
  tip: (x: number, y: number) => string;
  /** Draw a dot (with its tooltip) at every point (default true; off for long curves). */
  markers?: boolean;
}

/** One panel. */
export interface Panel {
  title: string;
  xlabel: string;
  series: Series[];
  /** The x values that get a tick and a label (default: every x of the points). */
  xTicks?: number[];
  /** Upper end of the y axis (default: a nice bound above the largest y). */
  ymax?: number;
}

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A "nice" upper bound for an axis. */
export function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * Two panels (900 × 380), x on a log2 scale (or linear with `xScale: 'linear'`); `footer` is an optional
 * right-aligned note in the legend row.
 */
export function twoPanelSvg(o: {
  title: string;
  subtitle: string;
  panels: [Panel, Panel];
  footer?: { text: string; color: string };
  xScale?: 'log2' | 'linear';
}): string {
  const W = 900;
  const H = 380;
  const panelW = 380;
  const panelH = 250;
  const top = 70;
  const lefts = [70, 520];
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(o.title)}</text>`,
    `<text x="${W / 2}" y="42" text-anchor="middle" fill="#555">${esc(o.subtitle)}</text>`,
  ];
  o.panels.forEach((p, pi) => {
    const left = lefts[pi]!;
    const xs = [...new Set(p.series.flatMap((s) => s.points.map(([x]) => x)))].sort((a, b) => a - b);
    const ys = p.series.flatMap((s) => s.points.map(([, y]) => y)).filter(Number.isFinite);
    const ymax = p.ymax ?? niceMax(Math.max(0, ...ys) * 1.05);
    const scale = o.xScale === 'linear' ? (x: number): number => x : Math.log2;
    // The axis spans the points and the ticks asked for.
    const span = p.xTicks ? [...xs, ...p.xTicks] : xs;
    const lo = Math.min(...span);
    const hi = Math.max(...span);
    const xOf = (x: number): number =>
      span.length <= 1 || lo === hi ? left + panelW / 2 : left + ((scale(x) - scale(lo)) / (scale(hi) - scale(lo))) * panelW;
    const yOf = (v: number): number => top + panelH - (v / ymax) * panelH;
    out.push(`<text x="${left + panelW / 2}" y="${top - 10}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`);
    out.push(`<rect x="${left}" y="${top}" width="${panelW}" height="${panelH}" fill="none" stroke="#999"/>`);
    for (let i = 0; i <= 5; i++) {
      const v = (ymax * i) / 5;
      out.push(`<line x1="${left}" x2="${left + panelW}" y1="${yOf(v)}" y2="${yOf(v)}" stroke="#eee"/>`);
      out.push(`<text x="${left - 6}" y="${yOf(v) + 4}" text-anchor="end" fill="#333">${Number(v.toPrecision(3))}</text>`);
    }
    for (const x of p.xTicks ?? xs) {
      out.push(`<line x1="${xOf(x)}" x2="${xOf(x)}" y1="${top + panelH}" y2="${top + panelH + 5}" stroke="#999"/>`);
      out.push(`<text x="${xOf(x)}" y="${top + panelH + 18}" text-anchor="middle">${x}</text>`);
    }
    out.push(`<text x="${left + panelW / 2}" y="${top + panelH + 36}" text-anchor="middle" fill="#333">${esc(p.xlabel)}</text>`);
    for (const s of p.series) {
      const pts = s.points.filter(([, y]) => Number.isFinite(y)).sort((a, b) => a[0] - b[0]);
      if (!pts.length) continue;
      out.push(`<path d="${pts.map(([x, y], i) => `${i ? 'L' : 'M'}${xOf(x).toFixed(1)},${yOf(y).toFixed(1)}`).join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
      if (s.markers !== false) for (const [x, y] of pts) out.push(`<circle cx="${xOf(x).toFixed(1)}" cy="${yOf(y).toFixed(1)}" r="3.5" fill="${s.color}"><title>${esc(s.tip(x, y))}</title></circle>`);
    }
  });
  const ly = H - 14;
  o.panels[0].series.forEach((s, i) => {
    out.push(`<line x1="${70 + i * 130}" x2="${95 + i * 130}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"/><text x="${100 + i * 130}" y="${ly}">${esc(s.label)}</text>`);
  });
  if (o.footer) out.push(`<text x="${W - 20}" y="${ly}" text-anchor="end" fill="${o.footer.color}">${esc(o.footer.text)}</text>`);
  out.push('</svg>', '');
  return out.join('\n');
}
