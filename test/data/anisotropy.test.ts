import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { meanPairwiseCosine, CentreSums, relativeCurves } from '../../src/analysis/anisotropy.js';
import { anisotropyCommand } from '../../src/cli/anisotropy.js';
import { runSvd } from '../../src/jobs/svd.js';
import { VitRuntime } from '../../src/runtime/vit-runtime.js';
import { runCmd, specOf, writePng } from './helpers.js';
import { loadPixels } from '../../src/images/preprocess.js';

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
  let svdCos: number[];
  try {
    svdCos = (await runSvd(spec, { outDir: run, input: m.path, threads: 1 })).layers.map((l) => l.mean_weighted_cosine);
    const { pixels, imageSize } = await loadPixels(spec, imgs);
    const rt = await VitRuntime.create(spec, { outputs: { ln: 'all' }, imageSize });
    const r = await rt.run(pixels, imgs.length);
    await rt.close();
    const T = rt.layout.tokens, d = spec.width, L = 3;
    const tok = rt.layout.patchStart + 2 * 4 + 2; // centre of the 4x4 grid
    expected = Array.from({ length: L }, (_, l) => meanPairwiseCosine(imgs.map((_, i) => r.ln!.subarray(((i * L + l) * T + tok) * d, ((i * L + l) * T + tok + 1) * d)))!);
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
  await assert.rejects(runCmd(anisotropyCommand, [m.path, imgs[0], '--out', join(root, 'x')]), /at least two images/);
  await assert.rejects(runCmd(anisotropyCommand, [m.path, ...imgs]), /give --out DIR/);
});
