import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chanceBands, modeBand, normalQuantile, weightedMeanBand } from '../../src/analysis/chance.js';
import { rng } from '../linalg/helpers.js';

/** Cosine of two independent random unit vectors in R^d (normalised Gaussians). */
function randomCosine(d: number, g: () => number, a: Float64Array, b: Float64Array): number {
  let aa = 0, bb = 0, ab = 0;
  for (let i = 0; i < d; i++) {
    a[i] = g();
    b[i] = g();
    aa += a[i] * a[i];
    bb += b[i] * b[i];
    ab += a[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

/** |coverage − level| ≤ 3 standard errors of a binomial proportion over `draws`. */
function assertCoverage(inside: number, draws: number, level: number, what: string): void {
  const p = inside / draws;
  const se = Math.sqrt((level * (1 - level)) / draws);
  assert.ok(Math.abs(p - level) <= 3 * se, `${what}: coverage ${p} vs ${level} (±${(3 * se).toFixed(4)})`);
}

test('known exact bands: d = 3 is uniform, d = 2 is the arcsine law', () => {
  const b3 = chanceBands(3);
  assert.ok(Math.abs(b3.mode95.hi - 0.95) < 1e-12 && Math.abs(b3.mode95.lo + 0.95) < 1e-12);
  assert.ok(Math.abs(b3.mode99.hi - 0.99) < 1e-12);
  assert.equal(b3.d, 3);
  // d = 2: c = cos θ with θ uniform, P(c > x) = arccos(x)/π
  assert.ok(Math.abs(modeBand(2, 0.95).hi - Math.cos(0.025 * Math.PI)) < 1e-9);
  // large d: c ≈ N(0, 1/d)
  const b = chanceBands(10000);
  assert.ok(Math.abs(b.mode95.hi - 1.96 / 100) < 2e-4);
  assert.throws(() => chanceBands(1), RangeError);
  assert.throws(() => chanceBands(2.5), RangeError);
  assert.throws(() => modeBand(10, 1), RangeError);
});

test('normal quantile', () => {
  assert.ok(Math.abs(normalQuantile(0.975) - 1.959963984540054) < 1e-8);
  assert.ok(Math.abs(normalQuantile(0.995) - 2.5758293035489004) < 1e-8);
  assert.ok(Math.abs(normalQuantile(0.01) + 2.3263478740408408) < 1e-8);
  assert.equal(normalQuantile(0.5), 0);
});

test('per-mode bands cover 95 % / 99 % of Monte Carlo cosines (20 000 draws)', () => {
  const g = rng(31);
  for (const d of [4, 16, 64]) {
    const b = chanceBands(d);
    const a = new Float64Array(d), c = new Float64Array(d);
    const N = 20000;
    let in95 = 0, in99 = 0;
    for (let t = 0; t < N; t++) {
      const x = randomCosine(d, g, a, c);
      if (x >= b.mode95.lo && x <= b.mode95.hi) in95++;
      if (x >= b.mode99.lo && x <= b.mode99.hi) in99++;
    }
    assertCoverage(in95, N, 0.95, `d=${d} 95%`);
    assertCoverage(in99, N, 0.99, `d=${d} 99%`);
  }
});

test('weighted-mean bands cover 95 % / 99 % of Monte Carlo weighted sums (20 000 draws)', () => {
  const g = rng(32);
  const cases: [number, number[]][] = [
    [16, [0.4, 0.3, 0.2, 0.1]],
    [8, [0.25, 0.25, 0.25, 0.25]],
    [4, [0.5, 0.3, 0.2]], // strongly platykurtic per-mode law
    [64, Array.from({ length: 12 }, (_, i) => (12 - i) / 78)],
  ];
  for (const [d, w] of cases) {
    const b95 = weightedMeanBand(d, w, 0.95), b99 = weightedMeanBand(d, w, 0.99);
    const a = new Float64Array(d), c = new Float64Array(d);
    const N = 20000;
    let in95 = 0, in99 = 0;
    for (let t = 0; t < N; t++) {
      let s = 0;
      for (const wi of w) s += wi * randomCosine(d, g, a, c);
      if (s >= b95.lo && s <= b95.hi) in95++;
      if (s >= b99.lo && s <= b99.hi) in99++;
    }
    assertCoverage(in95, N, 0.95, `d=${d} w=${w.length} 95%`);
    assertCoverage(in99, N, 0.99, `d=${d} w=${w.length} 99%`);
  }
});

test('weighted-mean band: variance Σw²/d, exact for one weight, symmetric, zero for no weight', () => {
  const d = 768;
  const w = Array.from({ length: 64 }, () => 1 / 64);
  const b = weightedMeanBand(d, w, 0.95);
  const normal = 1.959963984540054 * Math.sqrt(w.reduce((a, x) => a + x * x, 0) / d);
  assert.ok(b.hi < normal && b.hi > normal * (1 - 1e-3), `${b.hi} vs normal ${normal}`);
  assert.equal(b.lo, -b.hi);
  const one = weightedMeanBand(10, [0, 0.5, 0], 0.99);
  const m = modeBand(10, 0.99);
  assert.ok(Math.abs(one.hi - 0.5 * m.hi) < 1e-15);
  assert.deepEqual(weightedMeanBand(10, [0, 0], 0.95), { lo: 0, hi: 0 });
  // negative weights: same band as their absolute values (c is symmetric)
  assert.deepEqual(weightedMeanBand(20, [0.3, -0.7], 0.95), weightedMeanBand(20, [0.3, 0.7], 0.95));
  assert.throws(() => weightedMeanBand(20, [NaN], 0.95), RangeError);
});
