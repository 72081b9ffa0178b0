// The svd figures are written as plain SVG (no Observable Plot, no DOM): their colours, ticks
// and geometry are checked here against Plot itself and against exact positions, and the svd
// command's import graph is checked to stay free of Plot and linkedom (~0.3–0.8 s of start-up).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import * as Plot from '@observablehq/plot';
import sharp from 'sharp';
import { divergingColor, interpolateRdBu, niceTicks } from '../../src/report/figures/common.js';
import { headsFigure } from '../../src/report/figures/heads.js';
import { MAX_FIGURE_PIXELS, MIN_FIGURE_SCALE, figureScale, svgToPng } from '../../src/io/png.js';
import { repoRoot } from './golden.js';

test('divergingColor gives the colours of Plot\'s reversed RdBu diverging scale, clamped', () => {
  for (const limit of [0.05, 0.2, 0.35, 1]) {
    const plot = Plot.scale({ color: { type: 'diverging', scheme: 'RdBu', reverse: true, domain: [-limit, limit], pivot: 0, clamp: true } });
    const ours = divergingColor(limit);
    for (let k = -60; k <= 60; k++) {
      const v = (k / 50) * limit; // includes values beyond ±limit (clamped)
      assert.equal(ours(v), plot.apply(v), `limit ${limit}, v ${v}`);
    }
  }
  // Ends and centre of the scheme itself (ColorBrewer RdBu, 11 classes).
  assert.equal(interpolateRdBu(0), 'rgb(103, 0, 31)');
  assert.equal(interpolateRdBu(1), 'rgb(5, 48, 97)');
  assert.equal(interpolateRdBu(0.5), 'rgb(242, 239, 238)');
});

test('niceTicks: round steps of 1, 2 or 5 × 10^k inside the range (d3 ticks)', () => {
  assert.deepEqual(niceTicks(-0.6, 0.6, 5), [-0.6, -0.4, -0.2, 0, 0.2, 0.4, 0.6]);
  assert.deepEqual(niceTicks(-0.05, 0.05, 5), [-0.04, -0.02, 0, 0.02, 0.04]);
  assert.deepEqual(niceTicks(-1, 1, 5), [-1, -0.5, 0, 0.5, 1]);
  assert.deepEqual(niceTicks(0, 250, 5), [0, 50, 100, 150, 200, 250]);
  assert.deepEqual(niceTicks(2, 1, 2), [2, 1.5, 1]);
  assert.deepEqual(niceTicks(3, 3, 5), [3]);
});

test('heads figure: dots, σ line, band and zero rule at Plot\'s positions; one path per panel', () => {
  // One panel: 3 modes, x over [0, 2] inside 104 px with 3 px insets, y over [−1, 1] inside 70 px with 2 px insets.
  const svg = headsFigure({
    title: 't',
    layers: [{ layer: 0, heads: [{ head: 0, sigma: [4, 2, 0], cosine: [1, 0, -0.5], weightedCosine: 2 / 3, band95: { lo: -0.2, hi: 0.2 } }] }],
  });
  const grid = /<g transform="translate\(12,([\d.]+)\)">/.exec(svg);
  assert.ok(grid, 'grid group');
  // Panel origin inside the grid group: (52, 18).
  const x = (n: number) => 52 + 3 + (98 * n) / 2;
  const y = (v: number) => 18 + 2 + (66 * (1 - v)) / 2;
  const dots = /<g stroke="#0072B2" stroke-width="4" stroke-linecap="round" fill="none"><path d="([^"]*)"\/><\/g>/.exec(svg);
  assert.ok(dots, 'one dot path');
  assert.equal(dots[1], `M${x(0)},${y(1)}h0M${x(1)},${y(0)}h0M${x(2)},${y(-0.5)}h0`);
  const line = /<g stroke="#D55E00"[^>]*><path d="([^"]*)"\/><\/g>/.exec(svg);
  assert.ok(line, 'one σ line');
  // σ/σ_max = 1, 0.5, 0 drawn as 2·σ/σ_max − 1 = 1, 0, −1.
  assert.equal(line[1], `M${x(0)},${y(1)}L${x(1)},${y(0)}L${x(2)},${y(-1)}`);
  const r1 = (v: number) => Math.round(v * 10) / 10; // the figure's one-decimal coordinates
  assert.ok(svg.includes(`<path d="M52,${r1(y(0.2))}h104v${r1(y(-0.2) - y(0.2))}h-104z" fill="#b3b3b3" fill-opacity="0.5"/>`), 'band');
  assert.ok(svg.includes(`<path d="M52,${y(0)}h104" stroke="#555"`), 'zero rule');
  assert.ok(svg.includes('>L0 H0  C̄=0.67<'), 'title with the σ-weighted cosine');
  // A non-finite σ breaks the line; a non-finite cosine has no dot.
  const broken = headsFigure({
    title: 't',
    layers: [{ layer: 0, heads: [{ head: 0, sigma: [4, NaN, 2, 1], cosine: [0.5, NaN, 0, 0], weightedCosine: NaN, band95: { lo: -0.2, hi: 0.2 } }] }],
  });
  const d = /<g stroke="#D55E00"[^>]*><path d="([^"]*)"\/><\/g>/.exec(broken)![1];
  assert.equal((d.match(/M/g) ?? []).length, 2, 'two pieces');
  assert.equal((/<g stroke="#0072B2"[^>]*><path d="([^"]*)"/.exec(broken)![1].match(/M/g) ?? []).length, 3);
  assert.ok(broken.includes('C̄=n/a'));
  // 3 × 4 panels: one dot path and one line per panel (a single path for the grid renders ~2× slower in librsvg).
  const many = headsFigure({
    title: 't',
    layers: [0, 1, 2].map((l) => ({ layer: l, heads: [0, 1, 2, 3].map((h) => ({ head: h, sigma: [3, 2, 1], cosine: [0.1, 0.2, 0.3], weightedCosine: 0.2, band95: { lo: -0.1, hi: 0.1 } })) })),
  });
  assert.equal((/<g stroke="#0072B2"[^>]*>(.*?)<\/g>/.exec(many)![1].match(/<path /g) ?? []).length, 12);
});

test('figureScale: 2× up to the pixel budget, then smaller, never under 1.25×', () => {
  const svgOf = (w: number, h: number) => `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><rect width="${w}" height="${h}" fill="white"/></svg>`;
  assert.equal(figureScale(svgOf(1508, 1188)), 2); // ViT-B heads: 7.2 Mpx at 2×
  assert.equal(figureScale(svgOf(1972, 2948)), MIN_FIGURE_SCALE); // ViT-H heads: 23 Mpx at 2×
  const mid = figureScale(svgOf(2000, 1500)); // 12 Mpx at 2× → fits the budget
  assert.ok(Math.abs(2000 * 1500 * mid * mid - MAX_FIGURE_PIXELS) < 1e-3 && mid < 2 && mid > MIN_FIGURE_SCALE);
  assert.equal(figureScale(svgOf(100, 80), 1), 1, 'never above the asked scale');
  assert.equal(figureScale('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"/>'), 2, 'no size: as asked');
});

test('svgToPng rasterises a large figure at the fitted scale', async () => {
  const w = 1972, h = 2948;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><rect width="${w}" height="${h}" fill="white"/><circle cx="100" cy="100" r="50" fill="#0072B2"/></svg>`;
  const png = await svgToPng(svg);
  const meta = await sharp(png).metadata();
  assert.deepEqual([meta.width, meta.height], [Math.round(w * 1.25), Math.round(h * 1.25)]);
  const fixed = await svgToPng(`<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="white"/></svg>`, 2, { fit: false });
  assert.deepEqual([(await sharp(fixed).metadata()).width, (await sharp(fixed).metadata()).height], [80, 40]);
});

/** Relative imports of a TypeScript source file, resolved to .ts paths; bare package names as given. */
function importsOf(file: string): { local: string[]; packages: string[] } {
  const src = readFileSync(file, 'utf8');
  const local: string[] = [];
  const packages: string[] = [];
  for (const m of src.matchAll(/^\s*(?:import|export)\s(?!type\b)[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]/gm)) {
    const spec = (m[1] ?? m[2])!;
    if (spec.startsWith('.')) local.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
    else packages.push(spec);
  }
  return { local, packages };
}

test('the svd command loads neither Observable Plot nor linkedom (static imports)', () => {
  const root = repoRoot();
  const start = join(root, 'src', 'cli', 'svd.ts');
  const seen = new Set<string>();
  const reached = new Map<string, string[]>();
  const walk = (file: string, chain: string[]) => {
    if (seen.has(file) || !existsSync(file)) return;
    seen.add(file);
    const { local, packages } = importsOf(file);
    for (const p of packages) if (!reached.has(p)) reached.set(p, [...chain, file.slice(root.length + 1)]);
    for (const f of local) walk(f, [...chain, file.slice(root.length + 1)]);
  };
  walk(start, []);
  assert.ok(seen.has(join(root, 'src', 'report', 'figures', 'heads.ts')), 'the walk reaches the figures');
  for (const pkg of ['@observablehq/plot', 'linkedom']) assert.ok(!reached.has(pkg), `${pkg} is imported via ${reached.get(pkg)?.join(' -> ')}`);
});
