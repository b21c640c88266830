/**
 * 1000 (or n) English-like sentences, deterministic: words drawn from words.txt, 5–40 words each (uniform),
 * with occasional rare words built from SYLLABLES (split into several WordPiece pieces), suffixed words,
 * commas, numbers and a final '.', '?' or '!'. Same seed → same sentences.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

// Keep in sync with SYLLABLES / SUFFIXES in make_model.py (the vocabulary holds them as pieces).
export const SYLLABLES = ['ka', 'lo', 'mi', 'ren', 'tor', 'vel', 'dra', 'sin', 'quo', 'bar', 'zel', 'nim', 'pra', 'thu', 'gor', 'fen'];
const SUFFIXES = ['s', 'ed', 'ing', 'ly', 'er'];

export function loadWords(dir = path.dirname(new URL(import.meta.url).pathname)): string[] {
  return readFileSync(path.join(dir, 'words.txt'), 'utf8').split('\n').filter((l) => !l.startsWith('#')).flatMap((l) => l.split(/\s+/)).filter(Boolean);
}

/** A small seeded generator (mulberry32), so every run makes the same sentences (and bench/load the same requests). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function makeSentences(n = 1000, seed = 14, minWords = 5, maxWords = 40): string[] {
  const words = loadWords();
  const r = rng(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const out: string[] = [];
  for (let s = 0; s < n; s++) {
    const len = minWords + Math.floor(r() * (maxWords - minWords + 1));
    const ws: string[] = [];
    for (let i = 0; i < len; i++) {
      const u = r();
      let w: string;
      if (u < 0.04) w = Array.from({ length: 2 + Math.floor(r() * 3) }, () => pick(SYLLABLES)).join(''); // rare word
      else if (u < 0.10) w = pick(words) + pick(SUFFIXES);
      else if (u < 0.12) w = String(Math.floor(r() * 2000));
      else w = pick(words);
      if (i > 2 && i < len - 2 && r() < 0.06) w += ',';
      ws.push(w);
    }
    ws[0] = ws[0]!.charAt(0).toUpperCase() + ws[0]!.slice(1);
    const end = r();
    out.push(ws.join(' ') + (end < 0.8 ? '.' : end < 0.95 ? '?' : '!'));
  }
  return out;
}
