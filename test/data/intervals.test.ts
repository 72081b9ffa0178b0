/** The bootstrap behind the objects / pairing intervals, against exact answers. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bootstrapIntervals, clopperPearson, quantileSorted } from '../../src/analysis/intervals.js';
import { betaCdf } from '../../src/analysis/beta.js';

test('quantileSorted interpolates linearly between order statistics (numpy default)', () => {
  const v = [1, 2, 4, 8];
  // numpy.quantile([1, 2, 4, 8], [0, 0.25, 0.5, 0.9, 1]) = [1, 1.75, 3, 6.8, 8]
  assert.deepEqual([0, 0.25, 0.5, 0.9, 1].map((q) => +quantileSorted(v, q).toFixed(12)), [1, 1.75, 3, 6.8, 8]);
  assert.ok(Number.isNaN(quantileSorted([], 0.5)));
});

/** P(X ≤ k) for X ~ Binomial(n, p), through the regularised incomplete beta: 1 − I_p(k + 1, n − k). */
function binomCdf(k: number, n: number, p: number): number {
  return k >= n ? 1 : 1 - betaCdf(p, k + 1, n - k);
}

test('bootstrap of a mean of 0/1 data: percentile limits are the Binomial(n, p̂)/n quantiles', () => {
  const n = 100;
  const x = Array.from({ length: n }, (_, i) => (i % 10 < 3 ? 1 : 0)); // p̂ = 0.3
  const mean = (w: Uint32Array, out: Float64Array) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += w[i] * x[i];
    out[0] = s / n;
  };
  const [iv] = bootstrapIntervals(n, 1, mean, { resamples: 4000, seed: 7 });
  // The exact bootstrap distribution of the resampled mean is Binomial(100, 0.3)/100.
  const q = (p: number) => {
    let k = 0;
    while (binomCdf(k, n, 0.3) < p) k++;
    return k / n;
  };
  const lo = q(0.025), hi = q(0.975);
  assert.deepEqual([lo, hi], [0.21, 0.39], 'binomial quantiles');
  assert.ok(Math.abs(iv![0] - lo) <= 0.0100001 && Math.abs(iv![1] - hi) <= 0.0100001, `bootstrap ${iv} vs exact [${lo}, ${hi}]`);
  // Seeded: the same numbers again; another seed, other (close) numbers.
  assert.deepEqual(bootstrapIntervals(n, 1, mean, { resamples: 4000, seed: 7 })[0], iv);
  const other = bootstrapIntervals(n, 1, mean, { resamples: 4000, seed: 8 })[0]!;
  assert.ok(Math.abs(other[0] - iv![0]) <= 0.02 && Math.abs(other[1] - iv![1]) <= 0.02);
});

test('bootstrap: undefined statistics are left out; no images, no interval', () => {
  // Statistic 1 is defined only when image 0 is drawn.
  const [a, b] = bootstrapIntervals(3, 2, (w, out) => {
    out[0] = w[0] + w[1] + w[2];
    out[1] = w[0] > 0 ? 5 : NaN;
  });
  assert.deepEqual(a, [3, 3]);
  assert.deepEqual(b, [5, 5]);
  assert.deepEqual(bootstrapIntervals(0, 2, () => undefined), [null, null]);
  assert.deepEqual(bootstrapIntervals(2, 1, (_, out) => (out[0] = NaN)), [null]);
});

test('Clopper–Pearson intervals match R binom.test', () => {
  const close = (a: [number, number] | null, b: [number, number]) => assert.ok(a && Math.abs(a[0] - b[0]) < 1e-7 && Math.abs(a[1] - b[1]) < 1e-7, `${a} vs ${b}`);
  close(clopperPearson(3, 10), [0.06673951, 0.65245285]);
  close(clopperPearson(1, 3), [0.008403759, 0.9057007]);
  close(clopperPearson(0, 5), [0, 0.5218238]);
  close(clopperPearson(5, 5), [0.4781762, 1]);
  assert.equal(clopperPearson(0, 0), null);
});
