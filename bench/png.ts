/**
 * SVG → PNG for the figures in bench/results (README shows the PNG where an SVG of many thousand cells would be
 * slow to display): rendered by resvg (@resvg/resvg-js, a devDependency) with the system's fonts.
 */
import { Resvg } from '@resvg/resvg-js';

/** The PNG bytes of `svg` at its own size (`zoom` scales it; default 1.5 for a sharper picture). */
export function svgToPng(svg: string, zoom = 1.5): Buffer {
  const r = new Resvg(svg, { fitTo: { mode: 'zoom', value: zoom }, font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } });
  return r.render().asPng();
}
