import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { plantHead } from '../cli/planted.js';
import { tinyPixels } from '../runtime/tiny-specs.js';
import { ablateQueryWeight, loadLayerQK, modesOf } from '../../src/analysis/ablation-edit.js';
import { runAblation } from '../../src/jobs/ablate.js';
import { headModes } from '../../src/analysis/modes.js';
import { VitRuntime } from '../../src/runtime/vit-runtime.js';
import { loadSpec } from '../../src/arch/load.js';
import { type PixelSource } from '../../src/images/source.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-ablate-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const D = 32, HEADS = 2, DH = 16, IMG = 16;
// Layer 0 head 0 attends by one strong mode (σ_0 = 60), every other σ is 0.
const ONE = plantHead(D, [60, ...Array(DH - 1).fill(0)], [0.9, ...Array(DH - 1).fill(0)], 5);
const modelDir = writeModel(join(root, 'm'), 'hf-vit-classifier', makeLayoutWeights('hf-vit-classifier', {
  d: D, heads: HEADS, layers: 2, patch: 4, image: IMG, seed: 11, qkvBias: 'none',
  planted: (l, h) => (l === 0 && h === 0 ? ONE : undefined),
})).path;

export class MemoryPixels implements PixelSource {
  readonly channels = 3;
  constructor(readonly data: Float32Array, readonly count: number, readonly imageSize: [number, number]) {}
  async read(start: number, n: number) {
    const per = 3 * this.imageSize[0] * this.imageSize[1];
    return this.data.slice(start * per, (start + n) * per);
  }
  describe() {
    return { source: 'memory', count: this.count };
  }
  close() {}
}

test('the weight edit removes exactly the chosen modes: M\' = M − Σ σ_n u_n v_nᵀ', () => {
  const sigma = [9, 7, 5, 4, 3, 2.5, 2, 1.5, 1.2, 1, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1];
  const p = plantHead(D, sigma, sigma.map((_, n) => (n % 3) / 3 - 0.3), 9);
  // Full two-head query weight: head 1 (rows 16..31) carries the planted block; head 0 random.
  const wq = new Float64Array(2 * DH * D);
  for (let i = 0; i < DH * D; i++) wq[i] = Math.sin(i * 0.37);
  for (let i = 0; i < DH * D; i++) wq[DH * D + i] = p.wq[i];
  const wk = Float64Array.from(p.wk);
  const m = headModes(wq.subarray(DH * D), wk, null, D, DH, 0, 1);
  const removed = [1, 4];
  const edited = ablateQueryWeight(wq, 1, DH, D, m.U, removed);
  // Other head untouched, bit for bit (float32 copy).
  for (let i = 0; i < DH * D; i++) assert.equal(edited[i], Math.fround(wq[i]));
  // M' from the edited weight equals M − Σ σ_n u_n v_nᵀ.
  const eq = edited.subarray(DH * D);
  let maxErr = 0;
  for (let a = 0; a < D; a++)
    for (let b = 0; b < D; b++) {
      let mp = 0;
      for (let r = 0; r < DH; r++) mp += eq[r * D + a] * wk[r * D + b];
      let want = 0;
      for (let n = 0; n < DH; n++) if (!removed.includes(n)) want += sigma[n] * p.u[n * D + a] * p.v[n * D + b];
      maxErr = Math.max(maxErr, Math.abs(mp - want));
    }
  assert.ok(maxErr < 1e-5 * sigma[0], `max |M' − (M − removed)| = ${maxErr}`);
  // Recomputed SVD: the remaining σ's, plus zeros for the removed ones.
  const m2 = headModes(Float64Array.from(eq), wk, null, D, DH, 0, 1);
  const want = sigma.filter((_, n) => !removed.includes(n)).concat([0, 0]);
  for (let n = 0; n < DH; n++) assert.ok(Math.abs(m2.sigma[n] - want[n]) < 1e-5 * sigma[0], `σ'_${n} ${m2.sigma[n]} vs ${want[n]}`);
  // And the surviving modes keep their vectors (up to the joint sign).
  for (let n = 0; n < DH - 2; n++) {
    const orig = sigma.indexOf(want[n]);
    let du = 0;
    for (let i = 0; i < D; i++) du += m2.U[n * D + i] * p.u[orig * D + i];
    assert.ok(Math.abs(Math.abs(du) - 1) < 1e-5, `u'_${n} vs u_${orig}: ${du}`);
  }
});

test('ablating the one mode a planted head attends by removes its effect; a zero-σ mode changes nothing', async () => {
  const { spec, close } = await loadSpec(modelDir, {});
  try {
    const px = new MemoryPixels(tinyPixels(5, IMG, IMG, 3), 5, [IMG, IMG]);
    const labels = Int32Array.from([0, 1, -1, 3, 4]);
    const r = await runAblation(spec, px, { targets: [{ layer: 0, head: 0, modes: [0] }, { layer: 0, head: 0, modes: [7] }], batch: 2, threads: 1, labels });
    const [strong, zero] = r.effects;
    assert.ok(Math.abs(strong.sigma[0] - 60) < 1e-3);
    assert.ok(Math.abs(strong.frobenius_share - 1) < 1e-9);
    assert.ok(strong.attention.mean_kl > 0.05, `strong mode KL ${strong.attention.mean_kl}`);
    assert.ok(strong.attention.mean_abs_change > 1e-3);
    assert.equal(strong.attention.rows, 5 * 17);
    assert.ok((strong.output.mean_logit_kl ?? 0) > 0);
    assert.equal(strong.output.labelled, 4);
    assert.equal(zero.sigma[0], 0);
    assert.ok(zero.attention.mean_abs_change < 1e-6, `zero-σ mode changed attention by ${zero.attention.mean_abs_change}`);
    assert.ok(zero.attention.mean_kl < 1e-6);
    assert.equal(zero.output.top1_agreement, 1);
    assert.ok((zero.output.mean_logit_kl ?? 1) < 1e-6);
    assert.equal(zero.output.accuracy_original, zero.output.accuracy_ablated);
    assert.ok(r.timing.per_target_s > 0);
  } finally {
    await close();
  }
});

test('removing every mode of a head without query bias gives uniform attention from that head', async () => {
  const { spec, close } = await loadSpec(modelDir, {});
  try {
    for (const [l, h] of [[0, 0], [1, 1]]) {
      const x = await loadLayerQK(spec, l);
      const m = modesOf(spec, x, h);
      const wq = ablateQueryWeight(x.wq, h, DH, D, m.U, Array.from({ length: DH }, (_, n) => n));
      const rt = await VitRuntime.create(spec, { outputs: { attention: [l] }, overridable: [`blocks.${l}.q.weight`], threads: 1 });
      const before = await rt.run(tinyPixels(2, IMG, IMG, 4), 2);
      const res = await rt.run(tinyPixels(2, IMG, IMG, 4), 2, { weights: { [`blocks.${l}.q.weight`]: wq } });
      await rt.close();
      const T = rt.layout.tokens;
      let maxDev = 0, maxDevBefore = 0;
      for (let i = 0; i < 2; i++)
        for (let k = 0; k < T * T; k++) {
          const idx = (i * HEADS + h) * T * T + k;
          maxDev = Math.max(maxDev, Math.abs(res.attention![idx] - 1 / T));
          maxDevBefore = Math.max(maxDevBefore, Math.abs(before.attention![idx] - 1 / T));
        }
      assert.ok(maxDev < 1e-5, `L${l} H${h}: max |A − 1/T| = ${maxDev}`);
      assert.ok(maxDevBefore > 1e-3, `L${l} H${h} was not uniform before`);
      // The other head of the layer is untouched.
      const o = 1 - h;
      for (let k = 0; k < T * T; k++) assert.ok(Math.abs(res.attention![o * T * T + k] - before.attention![o * T * T + k]) < 1e-6);
    }
  } finally {
    await close();
  }
});

test('text models are refused with a clear message', async () => {
  const dir = writeModel(join(root, 'gpt2'), 'hf-gpt2', makeLayoutWeights('hf-gpt2', { d: 16, heads: 2, layers: 1, seed: 2 })).path;
  const { spec, close } = await loadSpec(dir, {});
  try {
    await assert.rejects(runAblation(spec, new MemoryPixels(new Float32Array(0), 0, [16, 16]), { targets: [{ layer: 0, head: 0, modes: [0] }] }), (e: Error) => e.name === 'UserError' && /vision transformer/.test(e.message));
  } finally {
    await close();
  }
});

for (const layout of ['timm-vit', 'hf-beit', 'hf-deit'] as const) {
  test(`ablation runs on a ${layout} checkpoint: a zero-σ mode changes nothing, the top mode does`, async () => {
    const P = plantHead(D, [30, 10, ...Array(DH - 2).fill(0)], [0.5, -0.5, ...Array(DH - 2).fill(0)], 8);
    const dir = writeModel(join(root, layout), layout, makeLayoutWeights(layout, { d: D, heads: HEADS, layers: 2, patch: 4, image: IMG, seed: 5, planted: (l, h) => (l === 1 && h === 1 ? P : undefined) })).path;
    const { spec, close } = await loadSpec(dir, {});
    try {
      const r = await runAblation(spec, new MemoryPixels(tinyPixels(3, IMG, IMG, 6), 3, [IMG, IMG]), { targets: [{ layer: 1, head: 1, modes: [0] }, { layer: 1, head: 1, modes: [9] }], threads: 1 });
      assert.ok(r.effects[0].attention.mean_kl > 1e-3, `${layout}: ${r.effects[0].attention.mean_kl}`);
      assert.ok(r.effects[1].attention.mean_abs_change < 1e-6, `${layout}: ${r.effects[1].attention.mean_abs_change}`);
      assert.equal(r.effects[1].output.top1_agreement, 1);
    } finally {
      await close();
    }
  });
}
