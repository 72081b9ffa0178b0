import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { modeContributions } from '../../src/analysis/contributions.js';
import { headModes } from '../../src/analysis/modes.js';
import { contributionsCommand } from '../../src/cli/contributions.js';
import { contributionsSummary, runContributions, writeContributions } from '../../src/jobs/contributions.js';
import { preprocessFor } from '../../src/images/preprocess.js';
import { ListingSource } from '../../src/images/source.js';
import { fileListing } from '../../src/images/sources.js';
import { readNpy } from '../../src/io/npy.js';
import { progressLines, runCmd, runCmdIO, specOf, writeCorrupt, writePng } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-contrib-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

function rnd(seed: number) {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  };
}

test('mode parts + bias terms reproduce the logits (pure function)', () => {
  const r = rnd(5);
  const T = 7, d = 12, dh = 4;
  const x = Float64Array.from({ length: T * d }, r);
  const wq = Float64Array.from({ length: dh * d }, r);
  const wk = Float64Array.from({ length: dh * d }, r);
  const bq = Float64Array.from({ length: dh }, r);
  const bk = Float64Array.from({ length: dh }, r);
  const relPos = Float64Array.from({ length: T * T }, r);
  const modes = headModes(wq, wk, bq, d, dh, 0, 0);
  // The "model": exact logits and their softmax.
  const logit = new Float64Array(T * T);
  for (let i = 0; i < T; i++)
    for (let j = 0; j < T; j++) {
      let s = 0;
      for (let a = 0; a < dh; a++) {
        let q = bq[a], k = bk[a];
        for (let c = 0; c < d; c++) {
          q += wq[a * d + c] * x[i * d + c];
          k += wk[a * d + c] * x[j * d + c];
        }
        s += q * k;
      }
      logit[i * T + j] = s / Math.sqrt(dh) + relPos[i * T + j];
    }
  const A = new Float64Array(T * T);
  for (let i = 0; i < T; i++) {
    let z = 0;
    for (let j = 0; j < T; j++) z += Math.exp(logit[i * T + j]);
    for (let j = 0; j < T; j++) A[i * T + j] = Math.exp(logit[i * T + j]) / z;
  }
  const rows = Array.from({ length: T }, (_, i) => i);
  const res = modeContributions({ x, T, d, dh, wq, wk, bq, bk, modes, attention: A, relPos, rows, modelScores: logit });
  assert.ok(res.check.model_relative! < 1e-12, String(res.check.model_relative));
  assert.ok(res.check.softmax_max_abs < 1e-12);
  const sum = res.modes.reduce((a, m) => a + m.contribution, 0) + Object.values(res.terms).reduce((a, b) => a + b, 0);
  let total = 0;
  for (let k = 0; k < T * T; k++) total += A[k] * logit[k];
  assert.ok(Math.abs(sum - total) < 1e-10 * Math.abs(total));
  // Ranked largest first.
  for (let k = 1; k < res.modes.length; k++) assert.ok(res.modes[k - 1].contribution >= res.modes[k].contribution);
  // Orientation: −1 exactly when the query rows with Q_n < 0 carry more of C_n (naive recomputation).
  let flipped = 0;
  for (const m of res.modes) {
    let pos = 0, neg = 0;
    for (let i = 0; i < T; i++) {
      let q = 0;
      for (let c = 0; c < d; c++) q += x[i * d + c] * modes.U[m.mode * d + c];
      let ak = 0;
      for (let j = 0; j < T; j++) {
        let k = 0;
        for (let c = 0; c < d; c++) k += x[j * d + c] * modes.V[m.mode * d + c];
        ak += A[i * T + j] * k;
      }
      const part = (m.sigma * q * ak) / Math.sqrt(dh);
      if (q > 0) pos += part;
      else neg += part;
    }
    assert.ok(Math.abs(pos + neg - m.contribution) < 1e-9 * Math.max(1, Math.abs(m.contribution)));
    assert.equal(m.orientation, neg > pos ? -1 : 1, `mode ${m.mode}: +${pos} −${neg}`);
    if (m.orientation < 0) flipped++;
  }
  assert.ok(flipped > 0 && flipped < res.modes.length, 'both orientations occur on random data');
  // One query row.
  const one = modeContributions({ x, T, d, dh, wq, wk, bq, bk, modes, attention: A, relPos, rows: [3], modelScores: logit });
  let t3 = 0;
  for (let j = 0; j < T; j++) t3 += A[3 * T + j] * logit[3 * T + j];
  assert.ok(Math.abs(one.total - t3) < 1e-10);
});

for (const layout of ['timm-vit', 'hf-beit'] as const) {
  test(`contributions on a real forward pass match the model's own scores (${layout})`, async () => {
    const m = writeModel(join(root, layout), layout, makeLayoutWeights(layout, { d: 24, heads: 2, layers: 2, patch: 4, image: 16, seed: 11 }));
    const img = await writePng(join(root, `${layout}.png`), 16, 16, (x, y) => [x * 15, y * 15, (x * y) % 256]);
    const { spec, close } = await specOf(m.path);
    try {
      const out = join(root, `${layout}-out`);
      const { pp, options } = preprocessFor(spec);
      const source = new ListingSource(fileListing([img]), pp, options, { keepCrops: true });
      const r = await runContributions(spec, { source }, { layer: 1, head: 1 });
      source.close();
      await writeContributions(r, out, { figures: layout === 'timm-vit' });
      const result = r.result;
      const summary = contributionsSummary(r);
      assert.ok(r.crop && r.crop.width === 16 && r.crop.height === 16, 'the crop is kept for the figure');
      assert.notEqual(result.check.model_relative, null, 'scores tap found');
      assert.ok(result.check.model_relative! < 1e-4, `residual ${result.check.model_relative}`);
      assert.ok(result.check.softmax_max_abs < 1e-5, `softmax ${result.check.softmax_max_abs}`);
      if (layout === 'hf-beit') assert.notEqual(result.terms.relative_position, 0);
      const sc = summary.sum_check as { modes_plus_terms: number; total: number };
      assert.ok(Math.abs(sc.modes_plus_terms - sc.total) <= 1e-9 * Math.max(1, Math.abs(sc.total)));
      const q = readNpy(join(out, 'query_maps.npy'));
      assert.deepEqual(q.shape, [spec.headDim, 4, 4]);
      assert.ok(existsSync(join(out, 'contributions.csv')));
      if (layout === 'timm-vit') assert.ok(existsSync(join(out, 'contributions.png')));
      const j = JSON.parse(readFileSync(join(out, 'contributions.json'), 'utf8'));
      assert.equal(j.index_base, 0);
      assert.equal(j.modes.length, spec.headDim);
    } finally {
      await close();
    }
  });
}

test('contributions CLI: --query-patch, and clear errors', async () => {
  const m = writeModel(join(root, 'cli'), 'timm-vit', makeLayoutWeights('timm-vit', { d: 16, heads: 2, layers: 2, patch: 4, image: 16, seed: 2 }));
  const img = await writePng(join(root, 'cli.png'), 16, 16, (x, y) => [x * 9, 255 - y * 9, 77]);
  const out = join(root, 'cli-out');
  const s = await runCmd(contributionsCommand, [m.path, img, '--layer', '0', '--head', '1', '--query-patch', '2,1', '--out', out, '--no-figures']);
  assert.match(s, /L0 H1: top modes M\d+/);
  const j = JSON.parse(readFileSync(join(out, 'contributions.json'), 'utf8'));
  assert.deepEqual(j.query.patch, [2, 1]);
  assert.equal(j.query.token, 1 + 2 * 4 + 1);
  assert.ok(j.residual.relative_to_model_scores < 1e-4);
  await assert.rejects(runCmd(contributionsCommand, [m.path, img, '--layer', '5', '--head', '0', '--out', out]), /--layer 5: .* layers 0\.\.1/);
  await assert.rejects(runCmd(contributionsCommand, [m.path, img, '--layer', '0', '--head', '0', '--query-patch', '9,0', '--out', out]), /--query-patch 9,0: the patch grid is 4x4/);
  await assert.rejects(runCmd(contributionsCommand, [m.path, img, '--layer', '0', '--head', '0', '--query-patch', 'x', '--out', out]), /--query-patch x: expected row,col/);
});

test('contributions CLI: progress in a pipe; an undecodable image is one line, not a stack trace', async () => {
  const m = writeModel(join(root, 'prog'), 'timm-vit', makeLayoutWeights('timm-vit', { d: 16, heads: 2, layers: 1, patch: 4, image: 16, seed: 3 }));
  const img = await writePng(join(root, 'prog.png'), 16, 16, (x, y) => [x * 9, y * 9, 40]);
  const io = await runCmdIO(contributionsCommand, [m.path, img, '--layer', '0', '--head', '0', '--out', join(root, 'prog-out'), '--no-figures', '--progress-every', '1']);
  assert.deepEqual(progressLines(io.stderr, 'contributions').map((l) => l.split(' (')[0]), ['contributions: 1/1 images']);
  const bad = writeCorrupt(join(root, 'broken.png'));
  await assert.rejects(runCmd(contributionsCommand, [m.path, bad, '--layer', '0', '--head', '0', '--out', join(root, 'bad-out')]), (e: Error) => {
    assert.equal(e.constructor.name, 'UserError');
    assert.match(e.message, /broken\.png: cannot decode/);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
});
