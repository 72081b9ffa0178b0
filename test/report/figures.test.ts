import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareFigure, headsFigure, heatmapFigure, type HeadsInput } from '../../src/report/figures/index.js';
import { assertGolden } from './golden.js';
import { svgToPng } from '../../src/io/png.js';

/** Deterministic pseudo-random numbers (Park–Miller). */
function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 16807) % 2147483647;
    return s / 2147483647;
  };
}

function heatValues(L: number, H: number): number[][] {
  return Array.from({ length: L }, (_, l) => Array.from({ length: H }, (_, h) => Math.round(Math.cos(l * 0.7 + h * 1.3) * 60 * (1 - l / L)) / 100));
}

function headsInput(L: number, H: number, dh: number): HeadsInput {
  const rnd = lcg(7);
  return {
    title: 'test/vit-tiny: singular modes per head',
    subtitle: 'LayerNorm space',
    layers: Array.from({ length: L }, (_, l) => ({
      layer: l,
      heads: Array.from({ length: H }, (_, h) => {
        const sigma = Array.from({ length: dh }, (_, n) => Math.round((10 * Math.exp(-n / 5) + rnd()) * 1000) / 1000).sort((a, b) => b - a);
        const cosine = sigma.map((_, n) => Math.round(((0.8 - l / L) * Math.exp(-n / 6) + 0.3 * (rnd() - 0.5)) * 1000) / 1000);
        const ws = sigma.reduce((a, s, i) => a + s * cosine[i], 0) / sigma.reduce((a, s) => a + s, 0);
        return { head: h, sigma, cosine, weightedCosine: ws, band95: { lo: -0.2, hi: 0.2 } };
      }),
    })),
  };
}

test('heatmap figure (values in cells, one NaN head) matches the golden SVG', () => {
  const values = heatValues(4, 6);
  values[2][3] = NaN;
  const svg = heatmapFigure({ title: 'test/vit-tiny', subtitle: 'σ-weighted cosine per head', values });
  assert.ok(svg.includes('layer (0-based)') && svg.includes('head (0-based)') && svg.includes('σ-weighted cosine'));
  assert.ok(svg.includes('>n/a<'));
  assert.ok(/>\u2212?\d\.\d\d</.test(svg), 'values printed in cells');
  assert.ok(svg.includes('\u22120.'), 'negative values printed with a minus sign');
  assert.equal(heatmapFigure({ title: 'test/vit-tiny', subtitle: 'σ-weighted cosine per head', values }), svg, 'deterministic');
  assertGolden('heatmap.svg', svg);
});

test('heatmap figure without cell values for a large grid, fixed colour limit', () => {
  const svg = heatmapFigure({ title: 'test/vit-deep', values: heatValues(20, 18), limit: 1 });
  assert.ok(!/>\u2212?\d\.\d\d</.test(svg), 'no printed values when the grid exceeds 16 × 16');
  assertGolden('heatmap-large.svg', svg);
});

test('heads figure (2 layers × 3 heads) matches the golden SVG', () => {
  const svg = headsFigure(headsInput(2, 3, 12));
  assert.ok(svg.includes('L1 H2  C̄='));
  assert.ok(svg.includes('mode index n (0-based'));
  assert.ok(svg.includes('95% chance band'));
  assert.equal(headsFigure(headsInput(2, 3, 12)), svg, 'deterministic');
  assertGolden('heads.svg', svg);
});

test('heads figure scales to a 12 × 12 grid', async () => {
  const svg = headsFigure(headsInput(12, 12, 64));
  assert.equal((svg.match(/L\d+ H\d+  C̄=/g) ?? []).length, 144);
  const png = await svgToPng(svg, 1);
  assert.ok(png.readUInt32BE(16) > 1200 && png.readUInt32BE(20) > 900);
});

test('compare figure (3 models, shared band) matches the golden SVG', () => {
  const models: [string, number][] = [
    ['google/vit-base-patch16-224', 12],
    ['facebook/dino-vitb16', 12],
    ['google/vit-large-patch16-224', 24],
  ];
  const curves = models.map(([label, L], k) => {
    const depth = Array.from({ length: L }, (_, l) => l / (L - 1));
    return { label, depth, value: depth.map((d) => Math.round((0.5 * Math.exp(-3 * d) - 0.05 + k * 0.1 * d ** 3) * 1000) / 1000) };
  });
  const input = { title: 'Similarity preference across depth', curves, band: { depth: [0, 1], lo: [-0.03, -0.03], hi: [0.03, 0.03] } };
  const svg = compareFigure(input);
  assert.ok(svg.includes('normalised depth l / (L − 1)'));
  assert.ok(svg.includes('σ-weighted cosine (layer mean)'));
  for (const [label] of models) assert.ok(svg.includes(`>${label}<`));
  assert.equal(compareFigure(input), svg, 'deterministic');
  assertGolden('compare.svg', svg);
  const rel = compareFigure({ ...input, relative: true, band: undefined, curves: curves.map((c) => ({ ...c, band: { lo: c.depth.map(() => -0.02), hi: c.depth.map(() => 0.02) } })) });
  assert.ok(rel.includes('relative σ-weighted cosine'));
  assert.ok(rel.includes('(per model, its colour)'));
});

test('compare figure tells 10 curves apart by colour × symbol', () => {
  const curves = Array.from({ length: 10 }, (_, k) => ({ label: `model-${k}`, depth: [0, 0.5, 1], value: [0.5, 0.1 * k, 0] }));
  const svg = compareFigure({ title: 'ten', curves });
  assert.equal((svg.match(/>model-\d</g) ?? []).length, 10);
});

test('figures reject inconsistent input', () => {
  assert.throws(() => heatmapFigure({ title: 't', values: [] }), /no layers/);
  assert.throws(() => compareFigure({ title: 't', curves: [] }), /no curves/);
  assert.throws(() => compareFigure({ title: 't', curves: [{ label: 'a', depth: [0, 1], value: [1] }] }), /2 depths but 1 values/);
  assert.throws(
    () => headsFigure({ title: 't', layers: [{ layer: 0, heads: [{ head: 0, sigma: [1, 2], cosine: [0], weightedCosine: 0, band95: { lo: 0, hi: 0 } }] }] }),
    /2 σ but 1 cosines/,
  );
});
