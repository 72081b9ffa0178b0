import { test } from 'node:test';
import assert from 'node:assert/strict';
import stdlibBetaQuantile from '@stdlib/stats-base-dists-beta-quantile';
import { betaCdf, betaQuantile, lnGamma } from '../../src/analysis/beta.js';

test('lnGamma matches known values', () => {
  assert.ok(Math.abs(lnGamma(1)) < 1e-14);
  assert.ok(Math.abs(lnGamma(0.5) - 0.5 * Math.log(Math.PI)) < 1e-14);
  assert.ok(Math.abs(lnGamma(10) - Math.log(362880)) < 1e-12);
  assert.ok(Math.abs(lnGamma(100.5) - 361.4355404677776) < 1e-10);
});

test('betaCdf: closed forms (uniform, arcsine-free a=b=2)', () => {
  for (const x of [0.1, 0.37, 0.5, 0.9]) {
    assert.ok(Math.abs(betaCdf(x, 1, 1) - x) < 1e-14);
    assert.ok(Math.abs(betaCdf(x, 2, 2) - (3 * x * x - 2 * x * x * x)) < 1e-14);
  }
});

test('betaQuantile agrees with @stdlib (an independent implementation) for the chance bands', () => {
  for (const d of [3, 8, 48, 192, 384, 768, 1024, 1280, 4096]) {
    const a = (d - 1) / 2;
    for (const p of [0.005, 0.025, 0.5, 0.975, 0.995]) {
      const ours = betaQuantile(p, a, a);
      const ref = stdlibBetaQuantile(p, a, a);
      assert.ok(Math.abs(ours - ref) < 1e-12, `d=${d} p=${p}: ${ours} vs ${ref}`);
    }
  }
});
