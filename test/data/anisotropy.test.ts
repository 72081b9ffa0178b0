import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { meanPairwiseCosine, CentreSums, GroupedCentreSums, relativeCurves } from '../../src/analysis/anisotropy.js';
import { studentTQuantile } from '../../src/analysis/intervals.js';
import { anisotropyCommand } from '../../src/cli/anisotropy.js';
import { runSvd, writeSvd } from '../../src/jobs/svd.js';
import { readSvdSummary } from '../../src/store/svd-run.js';
import { VitRuntime } from '../../src/runtime/vit-runtime.js';
import { progressLines, runCmd, runCmdIO, specOf, writeCorrupt, writePng } from './helpers.js';
import { loadPixels } from '../../src/images/load-pixels.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-aniso-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

test('CentreSums agrees with the direct pairwise mean; relative curves subtract it', () => {
  const vs = [
    [1, 0, 0],
    [1, 1, 0],
    [0, 2, 1],
    [-1, 0.5, 0.2],
  ];
  const s = new CentreSums(1, 3);
  for (const v of vs) s.add(0, v);
  s.flush();
  const direct = meanPairwiseCosine(vs)!;
  assert.ok(Math.abs(s.value(0)! - direct) < 1e-8, `${s.value(0)} vs ${direct}`);
  assert.equal(meanPairwiseCosine([[1, 2]]), null);
  const r = relativeCurves([{ layer: 0, mean_weighted_cosine: 0.5, heads: [{ weighted_cosine: 0.4 }, { weighted_cosine: 0.6 }] }], new Map([[0, { value: 0.2, n: 4 }]]), 3);
  assert.ok(Math.abs(r[0].relative_mean_weighted_cosine! - 0.3) < 1e-12);
  assert.deepEqual(r[0].relative_weighted_cosine.map((x) => Math.round(x! * 1e9) / 1e9), [0.2, 0.4]);
});

test('anisotropy CLI: baseline equals the mean centre-patch cosine of the model, relative = cosine − baseline', async () => {
  const m = writeModel(join(root, 'vit'), 'timm-vit', makeLayoutWeights('timm-vit', { d: 16, heads: 2, layers: 3, patch: 4, image: 16, seed: 4 }));
  const imgs: string[] = [];
  for (let k = 0; k < 4; k++) imgs.push(await writePng(join(root, `i${k}.png`), 16, 16, (x, y) => [(x * (k + 3) * 11) % 256, (y * (k + 5) * 7) % 256, (x * y * (k + 1)) % 256]));
  const run = join(root, 'run');
  const { spec, close } = await specOf(m.path);
  let expected: number[];
  let expectedIv: [number, number][];
  let svdCos: number[];
  try {
    const svd = await runSvd(spec, { input: m.path, threads: 1 });
    await writeSvd(svd, run, { figures: false });
    svdCos = svd.stats.layers.map((l) => l.mean_weighted_cosine);
    const { pixels, imageSize } = await loadPixels(spec, imgs);
    const rt = await VitRuntime.create(spec, { outputs: { ln: 'all' }, imageSize });
    const r = await rt.run(pixels, imgs.length);
    await rt.close();
    const T = rt.layout.tokens, d = spec.width, L = 3;
    const tok = rt.layout.patchStart + 2 * 4 + 2; // centre of the 4x4 grid
    const vec = (i: number, l: number) => r.ln!.subarray(((i * L + l) * T + tok) * d, ((i * L + l) * T + tok + 1) * d);
    expected = Array.from({ length: L }, (_, l) => meanPairwiseCosine(imgs.map((_, i) => vec(i, l)))!);
    // Delete-one jackknife by brute force (4 images ≤ 64 groups), t quantile from the table: t_{3, 0.975} = 3.182446.
    expectedIv = Array.from({ length: L }, (_, l) => {
      const loo = imgs.map((_, k) => meanPairwiseCosine(imgs.map((_, i) => vec(i, l)).filter((_, i) => i !== k))!);
      const mean = loo.reduce((a, b) => a + b, 0) / loo.length;
      const se = Math.sqrt((3 / 4) * loo.reduce((a, b) => a + (b - mean) ** 2, 0));
      return [expected[l] - 3.182446305 * se, expected[l] + 3.182446305 * se] as [number, number];
    });
  } finally {
    await close();
  }
  const out = await runCmd(anisotropyCommand, [m.path, ...imgs, '--run', run]);
  assert.match(out, /4 images; anisotropy/);
  const j = JSON.parse(readFileSync(join(run, 'anisotropy.json'), 'utf8'));
  assert.equal(j.centre_patch, 10);
  assert.equal(j.layers.length, 3);
  j.layers.forEach((l: { anisotropy: number; mean_weighted_cosine: number; relative_mean_weighted_cosine: number; depth: number }, k: number) => {
    assert.ok(Math.abs(l.anisotropy - expected[k]) < 1e-6, `layer ${k}: ${l.anisotropy} vs ${expected[k]}`);
    assert.ok(Math.abs(l.mean_weighted_cosine - svdCos[k]) < 1e-12);
    assert.ok(Math.abs(l.relative_mean_weighted_cosine - (svdCos[k] - expected[k])) < 1e-6);
    assert.equal(l.depth, k / 2);
  });
  assert.ok(existsSync(join(run, 'anisotropy.png')) && existsSync(join(run, 'anisotropy.csv')));
  // n and the jackknife interval per layer; the relative interval is the same interval carried over.
  assert.match(j.definition, /jackknife/);
  j.layers.forEach((l: { images: number; anisotropy_interval: [number, number]; relative_interval: [number, number]; mean_weighted_cosine: number }, k: number) => {
    assert.equal(l.images, 4);
    assert.ok(Math.abs(l.anisotropy_interval[0] - expectedIv[k][0]) < 1e-6 && Math.abs(l.anisotropy_interval[1] - expectedIv[k][1]) < 1e-6, `${l.anisotropy_interval} vs ${expectedIv[k]}`);
    assert.ok(Math.abs(l.relative_interval[0] - (l.mean_weighted_cosine - l.anisotropy_interval[1])) < 1e-12);
  });
  const h0 = j.layers[0];
  assert.ok(Math.abs(h0.relative_weighted_cosine_interval[1][1] - (h0.relative_weighted_cosine[1] + (h0.anisotropy - h0.anisotropy_interval[0]))) < 1e-12, 'per-head relative interval');
  // The svd run keeps its own manifest.
  assert.equal(readSvdSummary(run).kind, 'svd');
  assert.equal(j.command, 'anisotropy');
  assert.equal(j.tool.name, 'qkscope');

  // A corrupt image among the good ones: skipped, listed, the numbers unchanged; progress lines in a pipe.
  const bad = writeCorrupt(join(root, 'broken.png'));
  const out2 = join(root, 'with-bad');
  const io = await runCmdIO(anisotropyCommand, [m.path, imgs[0], bad, ...imgs.slice(1), '--out', out2, '--batch', '2', '--progress-every', '1']);
  assert.match(io.stdout, /4 images \(1 skipped\); anisotropy/);
  assert.match(io.stdout, /skipped .*broken\.png: cannot decode/);
  const lines = progressLines(io.stderr, 'anisotropy');
  assert.deepEqual(lines.map((l) => l.split(' (')[0]), ['anisotropy: 2/5 images', 'anisotropy: 4/5 images', 'anisotropy: 5/5 images']);
  assert.match(lines[2], /1 skipped/);
  const j2 = JSON.parse(readFileSync(join(out2, 'anisotropy.json'), 'utf8'));
  assert.deepEqual(j2.skipped.map((x: { path: string }) => x.path), [bad]);
  assert.match(j2.skipped[0].reason, /cannot decode/);
  assert.equal(j2.images, 4);
  j2.layers.forEach((l: { anisotropy: number }, k: number) => assert.ok(Math.abs(l.anisotropy - expected[k]) < 1e-6));
  await assert.rejects(runCmd(anisotropyCommand, [m.path, imgs[0], '--out', join(root, 'x')]), /at least two images/);
  await assert.rejects(runCmd(anisotropyCommand, [m.path, ...imgs]), /give --out DIR/);
});

test('GroupedCentreSums: value equals CentreSums; grouped jackknife by brute force; t quantiles', () => {
  let seed = 3;
  const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.3;
  const vs = Array.from({ length: 150 }, () => Array.from({ length: 5 }, rnd));
  const flat = new CentreSums(1, 5);
  const g = new GroupedCentreSums(1, 5, 8);
  vs.forEach((v, i) => {
    flat.add(0, v);
    g.add(0, i, v);
  });
  flat.flush();
  g.flush();
  assert.equal(g.value(0), flat.value(0), 'same exact sums, same value');
  assert.ok(Math.abs(g.value(0)! - meanPairwiseCosine(vs)!) < 1e-8);
  // Delete-a-group jackknife, groups i mod 8, by brute force.
  const loo = Array.from({ length: 8 }, (_, gi) => meanPairwiseCosine(vs.filter((_, i) => i % 8 !== gi))!);
  const mean = loo.reduce((a, b) => a + b, 0) / 8;
  const se = Math.sqrt((7 / 8) * loo.reduce((a, b) => a + (b - mean) ** 2, 0));
  const e = g.estimate(0);
  assert.equal(e.groups, 8);
  assert.equal(e.n, 150);
  assert.ok(Math.abs(e.se! - se) < 1e-8, `${e.se} vs ${se}`);
  const t7 = 2.364624252; // t_{7, 0.975}
  assert.ok(Math.abs(e.interval![0] - (e.value! - t7 * se)) < 1e-7 && Math.abs(e.interval![1] - (e.value! + t7 * se)) < 1e-7);
  // Two images: a value but no interval.
  const two = new GroupedCentreSums(1, 3);
  two.add(0, 0, [1, 0, 0]);
  two.add(0, 1, [1, 1, 0]);
  two.flush();
  assert.ok(Math.abs(two.value(0)! - Math.SQRT1_2) < 1e-9);
  assert.equal(two.estimate(0).interval, null);
  // Student t quantiles against the table.
  for (const [df, t] of [[1, 12.70620474], [2, 4.30265273], [3, 3.182446305], [10, 2.228138852], [30, 2.042272456], [1000, 1.962339081]]) {
    assert.ok(Math.abs(studentTQuantile(0.975, df) - t) < 1e-6, `df ${df}: ${studentTQuantile(0.975, df)}`);
  }
  assert.ok(Math.abs(studentTQuantile(0.025, 5) + 2.570581836) < 1e-6);
});
