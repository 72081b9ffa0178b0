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
import { MemoryPixels } from './memory-source.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-ablate-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const D = 32, HEADS = 2, DH = 16, IMG = 16;
// Layer 0 head 0 attends by one strong mode (σ_0 = 60), every other σ is 0.
const ONE = plantHead(D, [60, ...Array(DH - 1).fill(0)], [0.9, ...Array(DH - 1).fill(0)], 5);
const modelDir = writeModel(join(root, 'm'), 'hf-vit-classifier', makeLayoutWeights('hf-vit-classifier', {
  d: D, heads: HEADS, layers: 2, patch: 4, image: IMG, seed: 11, qkvBias: 'none',
  planted: (l, h) => (l === 0 && h === 0 ? ONE : undefined),
})).path;

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

// ---- suffix graphs, passes, skipped images, progress, sweep targets ---------------------------

import { sweepTargets, layerGroups, suffixWeightBytes, type AblationTarget } from '../../src/jobs/ablate.js';
import type { VitSpec } from '../../src/arch/spec.js';
import type { Progress } from '../../src/progress.js';

const L3 = 3;
const model3 = writeModel(join(root, 'm3'), 'hf-vit-classifier', makeLayoutWeights('hf-vit-classifier', {
  d: D, heads: HEADS, layers: L3, patch: 4, image: IMG, seed: 23,
  planted: (l, h) => (l === 2 && h === 1 ? ONE : undefined),
})).path;

/** Metrics of each target by the definitions, in float64, from whole-model runs (no suffix graphs, no accumulator). */
async function wholeModelEffects(spec: VitSpec, px: Float32Array, n: number, targets: AblationTarget[], labels: Int32Array) {
  const layers = [...new Set(targets.map((t) => t.layer))].sort((a, b) => a - b);
  const rt = await VitRuntime.create(spec, { outputs: { attention: layers, logits: true }, overridable: layers.map((l) => `blocks.${l}.q.weight`), threads: 1 });
  const T = rt.layout.tokens;
  const ref = await rt.run(px, n);
  const out = [];
  const softmax = (z: Float32Array, i: number, C: number) => {
    const row = Array.from(z.subarray(i * C, (i + 1) * C));
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  };
  const argmax = (p: number[]) => p.indexOf(Math.max(...p));
  for (const t of targets) {
    const x = await loadLayerQK(spec, t.layer);
    const m = modesOf(spec, x, t.head);
    const r = await rt.run(px, n, { weights: { [`blocks.${t.layer}.q.weight`]: ablateQueryWeight(x.wq, t.head, DH, D, m.U, t.modes) } });
    const j = layers.indexOf(t.layer);
    let abs = 0, kl = 0;
    for (let i = 0; i < n; i++) {
      const o = ((i * layers.length + j) * HEADS + t.head) * T * T;
      for (let q = 0; q < T; q++) {
        let rowKl = 0;
        for (let k = 0; k < T; k++) {
          const a = ref.attention![o + q * T + k], b = r.attention![o + q * T + k];
          abs += Math.abs(b - a);
          if (a > 0) rowKl += a * Math.log(a / Math.max(b, 1e-12));
        }
        kl += Math.max(0, rowKl);
      }
    }
    const C = ref.logits!.length / n;
    let lkl = 0, agree = 0, co = 0, ca = 0, lab = 0;
    for (let i = 0; i < n; i++) {
      const p = softmax(ref.logits!, i, C), q = softmax(r.logits!, i, C);
      lkl += Math.max(0, p.reduce((s, v, c) => s + (v > 0 ? v * Math.log(v / Math.max(q[c], 1e-12)) : 0), 0));
      if (argmax(p) === argmax(q)) agree++;
      if (labels[i] >= 0) {
        lab++;
        if (argmax(p) === labels[i]) co++;
        if (argmax(q) === labels[i]) ca++;
      }
    }
    out.push({ mean_abs_change: abs / (n * T * T), mean_kl: kl / (n * T), mean_logit_kl: lkl / n, top1_agreement: agree / n, accuracy_original: co / lab, accuracy_ablated: ca / lab, labelled: lab });
  }
  await rt.close();
  return out;
}

const close6 = (a: number, b: number) => Math.abs(a - b) <= 1e-4 * Math.abs(b) + 1e-7;

test('a sweep over every layer (suffix graphs from the residual) equals ablating in the whole model, in one pass or one pass per layer', async () => {
  const { spec, close } = await loadSpec(model3, {});
  try {
    const n = 5;
    const px = tinyPixels(n, IMG, IMG, 31);
    const labels = Int32Array.from([0, 1, -1, 2, 1]);
    const { targets, sweep } = sweepTargets(spec, { topModes: 2 });
    assert.equal(sweep, 'heads');
    assert.equal(targets.length, L3 * HEADS * 2);
    const want = await wholeModelEffects(spec, px, n, targets, labels);
    const one = await runAblation(spec, new MemoryPixels(px, n, [IMG, IMG]), { targets, batch: 2, threads: 1, labels });
    const perLayer = await runAblation(spec, new MemoryPixels(px, n, [IMG, IMG]), { targets, batch: 3, threads: 1, labels, maxSuffixBytes: 1 });
    assert.equal(one.timing.passes, 1);
    assert.equal(perLayer.timing.passes, L3);
    assert.ok(want.some((w) => w.mean_kl > 1e-2), 'some ablation changes attention');
    assert.ok(want.some((w) => w.top1_agreement < 1), 'some ablation changes a prediction');
    for (const r of [one, perLayer]) {
      assert.equal(r.images, n);
      r.effects.forEach((e, i) => {
        const w = want[i];
        const what = `${e.layer}.${e.head} M${e.modes} (${r.timing.passes} passes)`;
        for (const k of ['mean_abs_change', 'mean_kl'] as const) assert.ok(close6(e.attention[k], w[k]), `${what} ${k}: ${e.attention[k]} vs ${w[k]}`);
        assert.ok(close6(e.output.mean_logit_kl!, w.mean_logit_kl), `${what} logit KL: ${e.output.mean_logit_kl} vs ${w.mean_logit_kl}`);
        for (const k of ['top1_agreement', 'accuracy_original', 'accuracy_ablated', 'labelled'] as const) assert.equal(e.output[k], w[k], `${what} ${k}`);
      });
    }
  } finally {
    await close();
  }
});

test('a corrupt image is skipped and reported, in every pass, and the effects are those of the other images', async () => {
  const { spec, close } = await loadSpec(model3, {});
  try {
    const n = 6;
    const px = tinyPixels(n, IMG, IMG, 41);
    const per = 3 * IMG * IMG;
    const good = [0, 2, 3, 4, 5];
    const pxGood = new Float32Array(good.length * per);
    good.forEach((id, k) => pxGood.set(px.subarray(id * per, (id + 1) * per), k * per));
    const targets = [{ layer: 0, head: 1, modes: [0] }, { layer: 2, head: 1, modes: [0] }, { layer: 2, head: 1, modes: [5] }];
    const withBad = await runAblation(spec, new MemoryPixels(px, n, [IMG, IMG], new Set([1])), { targets, batch: 2, threads: 1, maxSuffixBytes: 1 });
    const without = await runAblation(spec, new MemoryPixels(pxGood, good.length, [IMG, IMG]), { targets, batch: 2, threads: 1 });
    assert.equal(withBad.timing.passes, 2);
    assert.equal(withBad.images, 5);
    assert.deepEqual(withBad.skipped.map((s) => [s.id, s.label, s.reason]), [[1, 'memory[1]', 'corrupt image (planted)']]);
    withBad.effects.forEach((e, i) => {
      const w = without.effects[i];
      assert.equal(e.output.images, 5);
      assert.equal(e.attention.rows, 5 * 17);
      assert.ok(close6(e.attention.mean_kl, w.attention.mean_kl) && close6(e.output.mean_logit_kl!, w.output.mean_logit_kl!), `target ${i}`);
    });
  } finally {
    await close();
  }
});

test('progress counts every forward run: images × (passes + ablations), advanced after each run', async () => {
  const { spec, close } = await loadSpec(model3, {});
  try {
    const events: string[] = [];
    let total = 0, done = 0, skipped = 0;
    const progress: Progress = {
      start: (label, t, o) => { total = t; events.push(`start ${o?.unit}`); },
      advance: (k, s = 0) => { done += k; skipped += s; events.push(`+${k}`); },
      note: (m) => events.push(m),
      end: () => events.push('end'),
    };
    const targets = [{ layer: 1, head: 0, modes: [0] }, { layer: 2, head: 1, modes: [0] }, { layer: 2, head: 1, modes: [1] }];
    const r = await runAblation(spec, new MemoryPixels(tinyPixels(5, IMG, IMG, 5), 5, [IMG, IMG], new Set([3])), { targets, batch: 2, threads: 1, maxSuffixBytes: 1 }, { progress });
    assert.equal(r.timing.passes, 2);
    assert.equal(total, 5 * (2 + 3));
    assert.equal(done, total);
    assert.equal(skipped, 1);
    assert.equal(events[0], 'start runs');
    assert.equal(events.at(-1), 'end');
    assert.ok(!events.some((e) => e.startsWith('skipped')), 'skips are counted by advance(), listed by the caller at the end');
    // Pass 1 (layer 1): 3 batches (2, 1 + the skip, 2 images) × (reference + 1 ablation); pass 2: 2 batches of 2 × (1 + 2).
    assert.equal(events.filter((e) => e.startsWith('+')).length, 3 * 2 + 1 + 2 * 3);
  } finally {
    await close();
  }
});

test('sweep targets: --top-modes takes the modes of largest σ, --modes chooses them, mistakes are one-line UserErrors', async () => {
  const { spec, close } = await loadSpec(model3, {});
  try {
    const top = sweepTargets(spec, { layer: 2, head: 1, topModes: 3 });
    assert.equal(top.sweep, 'modes');
    assert.deepEqual(top.targets.map((t) => t.modes[0]), [0, 1, 2]);
    const m = modesOf(spec, await loadLayerQK(spec, 2), 1);
    const sorted = Array.from(m.sigma).sort((a, b) => b - a);
    assert.deepEqual(top.targets.map((t) => m.sigma[t.modes[0]]), sorted.slice(0, 3));
    assert.equal(sweepTargets(spec, { layer: 2, head: 1 }).targets.length, DH);
    assert.deepEqual(sweepTargets(spec, { layer: 1, modes: [2, 4] }).targets.map((t) => `${t.layer}.${t.head}.${t.modes}`), ['1.0.2', '1.0.4', '1.1.2', '1.1.4']);
    assert.equal(sweepTargets(spec, {}).targets.length, L3 * HEADS);
    const bad: [Parameters<typeof sweepTargets>[1], RegExp][] = [
      [{ head: 0 }, /needs --layer/],
      [{ layer: 0, head: 0, modes: [1], topModes: 2 }, /give one of them/],
      [{ layer: 0, head: 0, topModes: DH + 1 }, /--top-modes 17: .* has 16 modes/],
      [{ layer: 3 }, /--layer 3: .* has layers 0\.\.2/],
      [{ layer: 0, modes: [16] }, /mode 16 is out of range/],
    ];
    for (const [sel, re] of bad) assert.throws(() => sweepTargets(spec, sel), (e: Error) => e.name === 'UserError' && re.test(e.message) && !e.message.includes('\n'), JSON.stringify(sel));
    // Passes: each layer's suffix holds its blocks and the head (layer 0 reuses the reference session).
    assert.ok(suffixWeightBytes(spec, 0) > suffixWeightBytes(spec, 2));
    assert.deepEqual(layerGroups(spec, [2, 0, 1], Infinity), [[0, 1, 2]]);
    assert.deepEqual(layerGroups(spec, [2, 0, 1], 1), [[0], [1], [2]]);
    assert.deepEqual(layerGroups(spec, [0, 1, 2], suffixWeightBytes(spec, 1) + suffixWeightBytes(spec, 2) - 1), [[0, 1], [2]]);
    assert.deepEqual(layerGroups(spec, [0, 1, 2], suffixWeightBytes(spec, 1) + suffixWeightBytes(spec, 2)), [[0, 1, 2]]);
  } finally {
    await close();
  }
});

test('a stop request ends the ablation after the batch in flight: the effects cover the images done and say so', async () => {
  const { spec, close } = await loadSpec(model3, {});
  try {
    const stop = { stop: false };
    const progress: Progress = { start() {}, advance: () => void (stop.stop = true), note() {}, end() {} };
    const targets = [{ layer: 1, head: 0, modes: [0] }, { layer: 2, head: 1, modes: [0] }];
    const r = await runAblation(spec, new MemoryPixels(tinyPixels(6, IMG, IMG, 8), 6, [IMG, IMG]), { targets, batch: 2, threads: 1, maxSuffixBytes: 1 }, { progress, stop });
    assert.equal(r.interrupted, true);
    assert.equal(r.images, 2);
    assert.equal(r.effects[0].output.images, 2);
    assert.equal(r.effects[1].output.images, 0, 'the second pass never ran');
    const done = await runAblation(spec, new MemoryPixels(tinyPixels(2, IMG, IMG, 8), 2, [IMG, IMG]), { targets: targets.slice(0, 1), batch: 2, threads: 1 }, { stop: { stop: true } });
    assert.equal(done.interrupted, false, 'a stop after the last batch interrupts nothing');
  } finally {
    await close();
  }
});
