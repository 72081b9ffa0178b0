import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PositionContentLayer, shares } from '../../src/analysis/position-content.js';
import { runPositionContent } from '../../src/jobs/position-content.js';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { mulberry32, gaussian } from '../../src/analysis/synthetic.js';
import { loadSpec } from '../../src/arch/load.js';
import { MemoryPixels } from '../ablate/memory-source.js';
import { ImageDecodeError } from '../../src/images/decode.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-pc-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

test('the factorised energies equal the brute-force sums of the four squared terms', () => {
  const N = 4, T = 5, K = 2;
  const g = gaussian(mulberry32(3));
  // Projections per image [T, 2K] (any numbers: the maths is per column).
  const data = Array.from({ length: N }, () => Float64Array.from({ length: T * 2 * K }, () => g() + 0.5));
  const sigma = [2, 0.5];
  const acc = new PositionContentLayer(T, K);
  for (const x of data) acc.addMean(x);
  for (const x of data) acc.addImage(x);
  const e = acc.energies(sigma);
  for (let k = 0; k < K; k++) {
    const mean = (col: number, t: number) => data.reduce((s, x) => s + x[t * 2 * K + col], 0) / N;
    const want = [0, 0, 0, 0];
    for (const x of data)
      for (let i = 0; i < T; i++)
        for (let j = 0; j < T; j++) {
          const qp = mean(k, i), kp = mean(K + k, j);
          const qc = x[i * 2 * K + k] - qp, kc = x[j * 2 * K + K + k] - kp;
          const terms = [qc * kc, qc * kp, qp * kc, qp * kp];
          terms.forEach((v, p) => (want[p] += (sigma[k] * v) ** 2));
        }
    for (let p = 0; p < 4; p++) assert.ok(Math.abs(e[k][p] - want[p]) < 1e-9 * Math.max(1, want[p]), `mode ${k} part ${p}: ${e[k][p]} vs ${want[p]}`);
    const s = shares(e[k])!;
    assert.ok(Math.abs(s.reduce((a, b) => a + b) - 1) < 1e-12);
  }
  assert.equal(shares([0, 0, 0, 0]), null);
});

/**
 * A model whose block-0 input separates position from content exactly: the position embedding
 * and CLS live in coordinates 0..15 (A), the patch embedding writes only 16..31 (B), no patch
 * bias, and the images come in pairs (x, −x), so the per-position mean is the position
 * embedding and the content lies in B. Head 0's one mode reads A on both sides (pure PP),
 * head 1 B/B (CC), head 2 query A / key B (PC), head 3 query B / key A (CP).
 */
function plantedModel(): string {
  const D = 32, H = 4, DH = 8;
  const e = (i: number, s: number) => Float32Array.from({ length: DH * D }, (_, k) => (k === i ? Math.sqrt(s) : 0));
  const pairs: [number, number][] = [[0, 1], [16, 17], [2, 18], [19, 3]];
  const w = makeLayoutWeights('hf-vit', {
    d: D, heads: H, layers: 1, patch: 4, image: 16, seed: 4, patchBias: false, qkvBias: 'none',
    planted: (l, h) => ({ wq: e(pairs[h][0], 3 + h), wk: e(pairs[h][1], 3 + h) }),
  });
  for (let r = 0; r < w.posRows; r++) for (let c = 16; c < D; c++) w.pos![r * D + c] = 0;
  for (let c = 16; c < D; c++) w.cls![c] = 0;
  const per = w.opts.channels * 16;
  for (let o = 0; o < 16; o++) for (let k = 0; k < per; k++) w.patchW[o * per + k] = 0;
  return writeModel(join(root, 'pc'), 'hf-vit', w).path;
}

function pairedPixels(pairs: number): MemoryPixels {
  const g = gaussian(mulberry32(9));
  const per = 3 * 16 * 16;
  const px = new Float32Array(2 * pairs * per);
  for (let m = 0; m < pairs; m++)
    for (let k = 0; k < per; k++) {
      const v = g();
      px[2 * m * per + k] = v;
      px[(2 * m + 1) * per + k] = -v;
    }
  return new MemoryPixels(px, 2 * pairs, [16, 16]);
}

test('planted purely positional / purely content modes give the planted shares', async () => {
  const { spec, close } = await loadSpec(plantedModel(), {});
  try {
    const r = await runPositionContent(spec, pairedPixels(3), { embedding: 'residual', threads: 1, batch: 4 });
    assert.equal(r.images, 6);
    assert.equal(r.tokens, 17);
    const want = [[0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]]; // [CC, CP, PC, PP]
    const hs = r.layers[0].heads;
    for (let h = 0; h < 4; h++) {
      const s = hs[h].shares[0]!;
      for (let p = 0; p < 4; p++) assert.ok(Math.abs(s[p] - want[h][p]) < 1e-6, `head ${h} part ${p}: ${s}`);
      assert.ok(Math.abs(hs[h].sigma[0] - (3 + h)) < 1e-5);
      for (let n = 1; n < 8; n++) assert.equal(hs[h].shares[n], null);
      assert.deepEqual(hs[h].total_shares!.map((v) => Math.round(v * 1e6) / 1e6), want[h]);
    }
    const lt = r.layers[0].total_shares!;
    assert.ok(Math.abs(lt.reduce((a, b) => a + b) - 1) < 1e-12);
    // Patch tokens only: same purity.
    const rp = await runPositionContent(spec, pairedPixels(2), { embedding: 'residual', tokens: 'patches', threads: 1 });
    assert.deepEqual(rp.range, [1, 17]);
    assert.ok(rp.layers[0].heads[0].shares[0]![3] > 1 - 1e-6);
    // The default (LayerNorm output) runs and gives proper shares.
    const rl = await runPositionContent(spec, pairedPixels(2), { threads: 1 });
    assert.equal(rl.embedding, 'ln');
    for (const h of rl.layers[0].heads) assert.ok(Math.abs(h.total_shares!.reduce((a, b) => a + b) - 1) < 1e-9);
  } finally {
    await close();
  }
});

test('an image that fails to load is skipped in both passes (pass 2 asks only for the images pass 1 used); shares are those of the other images', async () => {
  const { spec, close } = await loadSpec(plantedModel(), {});
  try {
    const all = pairedPixels(3);
    const per = 3 * 16 * 16;
    // Image 2 fails the first time it is read only: were pass 2 to ask for it, it would load.
    const calls = new Map<number, number>();
    class FailsOnce extends MemoryPixels {
      override async load(i: number, out: Float32Array, offset: number) {
        calls.set(i, (calls.get(i) ?? 0) + 1);
        if (i === 2 && calls.get(i) === 1) throw new ImageDecodeError('truncated (planted)');
        return super.load(i, out, offset);
      }
    }
    const r = await runPositionContent(spec, new FailsOnce(all.data, 6, [16, 16]), { embedding: 'residual', threads: 1, batch: 4 });
    assert.equal(calls.get(2), 1);
    assert.equal(calls.get(3), 2);
    assert.equal(r.images, 5);
    assert.deepEqual(r.skipped.map((s) => [s.id, s.reason]), [[2, 'truncated (planted)']]);
    const good = [0, 1, 3, 4, 5];
    const px = new Float32Array(5 * per);
    good.forEach((id, k) => px.set(all.data.subarray(id * per, (id + 1) * per), k * per));
    const want = await runPositionContent(spec, new MemoryPixels(px, 5, [16, 16]), { embedding: 'residual', threads: 1, batch: 4 });
    r.layers[0].heads.forEach((h, i) => {
      const w = want.layers[0].heads[i];
      h.total.forEach((e, p) => assert.ok(Math.abs(e - w.total[p]) <= 1e-5 * Math.max(1, Math.abs(w.total[p])), `head ${i} part ${p}: ${e} vs ${w.total[p]}`));
    });
  } finally {
    await close();
  }
});

test('a stop request during position-content is a UserError (exit 130): both passes are needed', async () => {
  const { spec, close } = await loadSpec(plantedModel(), {});
  try {
    const stop = { stop: false };
    const progress = { start() {}, advance: () => void (stop.stop = true), note() {}, end() {} };
    await assert.rejects(runPositionContent(spec, pairedPixels(3), { threads: 1, batch: 2 }, { progress, stop }), (e: Error & { exitCode?: number }) => e.name === 'UserError' && e.exitCode === 130 && /interrupted/.test(e.message));
  } finally {
    await close();
  }
});
