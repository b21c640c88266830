/**
 * lib/ has no import cycles. A cycle makes module initialisation order matter
 * (a value imported from a module that is still initialising is undefined),
 * and it is the first sign of two modules that should be one, or of a third
 * one missing. Type-only imports count too: they show the same tangle.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const LIB = path.resolve(__dirname, '..', 'lib');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

/** Relative module specifiers of every import/export-from in a file, resolved to files. */
export function importsOf(file: string, source: string): string[] {
  const out: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\b[^'";]*?\bfrom\s*['"](\.[^'"]+)['"]|(?:^|\n)\s*import\s*['"](\.[^'"]+)['"]/g;
  for (const m of source.matchAll(re)) {
    const spec = (m[1] ?? m[2])!;
    const base = path.resolve(path.dirname(file), spec);
    const candidates = [`${base}.ts`, path.join(base, 'index.ts'), base.replace(/\.js$/, '.ts')];
    const hit = candidates.find((c) => {
      try {
        return statSync(c).isFile();
      } catch {
        return false;
      }
    });
    if (hit) out.push(hit);
  }
  return out;
}

/** Every set of files that import each other in a circle (Tarjan's strongly connected components of size > 1, or a self-import). */
export function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.reverse());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return found;
}

describe('lib/ import graph', () => {
  const files = sources(LIB);
  const graph = new Map(files.map((f) => [f, importsOf(f, readFileSync(f, 'utf8'))]));

  it('reads the imports of every file (the parser sees the graph)', () => {
    expect(files.length).toBeGreaterThan(30);
    // ops/matmul.ts imports tensor.ts: if the parser missed imports, this would fail before the cycle check passes vacuously.
    expect(graph.get(path.join(LIB, 'ops', 'matmul.ts'))).toContain(path.join(LIB, 'tensor.ts'));
    expect(graph.get(path.join(LIB, 'ops.ts'))).toContain(path.join(LIB, 'ops', 'norms.ts'));
    const edges = [...graph.values()].reduce((n, e) => n + e.length, 0);
    expect(edges).toBeGreaterThan(files.length);
  });

  it('the cycle finder finds a planted cycle', () => {
    const g = new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]);
    expect(cycles(g)).toEqual([['a', 'b', 'c']]);
  });

  it('has no cycles', () => {
    const rel = cycles(graph).map((c) => c.map((f) => path.relative(LIB, f)).join(' → '));
    expect(rel).toEqual([]);
  });
});
