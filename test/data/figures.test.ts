/** Golden SVGs of the token-level figures (contributions, anisotropy, objects, pairing), from deterministic synthetic input. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { contributionsFigure } from '../../src/report/figures/contributions.js';
import { anisotropyFigure } from '../../src/report/figures/anisotropy.js';
import { objectsFigure } from '../../src/report/figures/objects.js';
import { pairingFigure } from '../../src/report/figures/pairing.js';
import type { AnisotropyLayer } from '../../src/analysis/anisotropy.js';
import type { LayerPairing } from '../../src/analysis/pairing.js';
import { assertGolden } from '../report/golden.js';

// 1×1 PNGs (red-ish and grey): deterministic tiles.
const TILE = 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
const PHOTO = 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAADElEQVR4nGOoyEsBAAKsAUt4NoZjAAAAAElFTkSuQmCC';

const depthOf = (L: number) => Array.from({ length: L }, (_, l) => l / (L - 1));

test('contributions figure: photo, ranked mode tiles, colour key, mode bars and bias terms on their own axis', () => {
  const contrib = [2.4, 1.1, 0.62, 0.3, -0.21, 0.12];
  const input = {
    title: 'test/vit: mode contributions, layer 5 head 3',
    subtitle: 'cat.jpg, query patch 7,7; 0-based; maps: query red, key cyan, white both',
    photo: PHOTO,
    grid: [14, 14] as [number, number],
    queryPatch: [7, 7] as [number, number],
    tiles: contrib.map((c, i) => ({ label: i === 2 ? `M${i * 3} (−u,−v)` : `M${i * 3}`, contribution: c, share: c / 4.75, cosine: 0.4 - 0.15 * i, href: i === 4 ? null : TILE })),
    bars: contrib.map((c, i) => ({ label: `M${i * 3}`, value: c })),
    rest: { count: 58, value: 0.35, share: 0.074 },
    terms: [
      { label: 'key bias', value: 9.5 },
      { label: 'rel. position', value: -0.8 },
    ],
    note: '(%) = C/Σ|C| over all modes. Query bias 0.123 and constant −0.0456 are constant along each query row and cancel in the softmax; Σ A·logit = 12.34',
  };
  const svg = contributionsFigure(input);
  assert.equal(contributionsFigure(input), svg, 'deterministic');
  assert.equal((svg.match(/<image /g) ?? []).length, 1 + 5, 'photo + five tiles (one unavailable)');
  assert.ok(svg.includes('query x·u') && svg.includes('key x·v'), 'colour key');
  assert.ok(svg.includes('bias terms') && svg.includes('key bias'));
  assert.ok(svg.includes('not drawn: 58 more modes, Σ C = 0.35 (7.4 %)'));
  assert.ok(svg.includes('#ffd700'), 'query patch marked');
  assertGolden('contributions.svg', svg);
  // Without a photo or bias terms.
  const bare = contributionsFigure({ ...input, photo: null, queryPatch: undefined, terms: [], tiles: input.tiles.slice(0, 2), note: undefined });
  assert.ok(bare.includes('no photo') && !bare.includes('bias terms'));
});

test('anisotropy figure: anisotropy and relative cosine with their interval bands', () => {
  const L = 6;
  const layers: AnisotropyLayer[] = depthOf(L).map((depth, l) => {
    const a = 0.15 + 0.5 * depth ** 2;
    const c = 0.45 - 0.2 * depth;
    const h = 0.02 + 0.01 * l;
    return {
      layer: l,
      depth,
      anisotropy: a,
      images: 40,
      anisotropy_interval: [a - h, a + h],
      mean_weighted_cosine: c,
      relative_mean_weighted_cosine: c - a,
      relative_interval: [c - a - h, c - a + h],
      relative_weighted_cosine: [c - a],
      relative_weighted_cosine_interval: [[c - a - h, c - a + h]],
    };
  });
  const svg = anisotropyFigure({ model: 'test/vit', layers, embedding: 'ln', images: 40, intervalLabel: '95% jackknife interval over images' });
  assert.ok(svg.includes('n = 40 images'));
  assert.ok(svg.includes('95% jackknife interval over images'));
  assert.equal((svg.match(/fill-opacity="0.12"/g) ?? []).length, 2 + 1, 'two bands and the legend swatch');
  assertGolden('anisotropy.svg', svg);
});

test('objects figure: three categories with bootstrap bands', () => {
  const L = 8;
  const layers = depthOf(L).map((depth) => {
    const same = 0.6 - 0.3 * depth, other = 0.1 + 0.1 * depth, bg = 1 - same - other;
    const iv = (v: number): [number, number] => [v - 0.04, v + 0.05];
    return { depth, same_object: same, other_object: other, background: bg, same_object_interval: iv(same), other_object_interval: iv(other), background_interval: iv(bg) };
  });
  const svg = objectsFigure({ model: 'test/vit', images: 25, layers, intervalLabel: '95% bootstrap interval over images (2000 resamples)' });
  assert.ok(svg.includes('n = 25 images'));
  assert.equal((svg.match(/fill-opacity="0.12"/g) ?? []).length, 3 + 1, 'three bands and the legend swatch');
  assertGolden('objects.svg', svg);
});

test('pairing figure: σ-weighted probability with its band, plain mean, dashed chance baseline', () => {
  const L = 6;
  const layers: LayerPairing[] = depthOf(L).map((depth, l) => ({
    layer: l,
    depth,
    weighted_probability: 0.3 + 0.4 * depth,
    mean_probability: 0.28 + 0.35 * depth,
    modes: 20,
    baseline: 0.22 + 0.01 * l,
    mean_baseline: 0.22 + 0.01 * l,
    n: 30,
    n_single: 4,
    interval: [0.22 + 0.4 * depth, 0.38 + 0.4 * depth],
    excess: 0.08 + 0.39 * depth,
    excess_interval: [0, 0.2],
  }));
  const svg = pairingFigure({ model: 'test/vit', layers, top: 5, images: 30, single: 4, intervalLabel: '95% bootstrap interval over images (2000 resamples)' });
  assert.ok(svg.includes('stroke-dasharray="5,3"'), 'dashed baseline');
  assert.ok(svg.includes('n = 30 with two or more objects (4 with fewer left out)'));
  assertGolden('pairing.svg', svg);
});
