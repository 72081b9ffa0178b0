import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { objectsCommand } from '../../src/cli/objects.js';
import { rowShares } from '../../src/analysis/objects.js';
import { VitRuntime } from '../../src/runtime/vit-runtime.js';
import { BLUE, GREEN, PLANTED_D, RED, plantedWeights, progressLines, runCmd, runCmdIO, specOf, writeCorrupt, writeMask, writePng } from './helpers.js';
import { loadPixels } from '../../src/images/load-pixels.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-objects-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const D = PLANTED_D;

/** Two 16×16 images: target and distractor are 8×8 squares (2×2 patches), background blue. */
async function dataset(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const inT = [(x: number, y: number) => x < 8 && y < 8, (x: number, y: number) => x >= 8 && y < 8];
  const inD = [(x: number, y: number) => x >= 8 && y >= 8, (x: number, y: number) => x < 8 && y >= 8];
  for (let k = 0; k < 2; k++) {
    await writePng(join(dir, `img${k}.png`), 16, 16, (x, y) => (inT[k](x, y) ? RED : inD[k](x, y) ? GREEN : BLUE));
    await writeMask(join(dir, `img${k}.target.png`), 16, 16, (x, y) => (inT[k](x, y) ? 255 : 0));
    await writeMask(join(dir, `img${k}.distractor.png`), 16, 16, (x, y) => (inD[k](x, y) ? 255 : 0));
  }
}

test('rowShares renormalises over patches and splits target / distractor / background', () => {
  // T = 1 CLS + 4 patches; coverage: p0 target, p1 half distractor.
  const s = rowShares([0.5, 0.25, 0.125, 0.125, 0], 1, [1, 0, 0, 0], [0, 0.5, 0, 0]);
  assert.ok(Math.abs(s.target - 0.5) < 1e-12 && Math.abs(s.distractor - 0.125) < 1e-12 && Math.abs(s.background - 0.375) < 1e-12);
});

test('objects: a grouping head attends within the object, a background head to the background', async () => {
  const data = join(root, 'data');
  await dataset(data);
  const grp = writeModel(join(root, 'group'), 'hf-vit', plantedWeights('group'));
  const out = join(root, 'out-group');
  const line = await runCmd(objectsCommand, [grp.path, data, '--out', out]);
  assert.match(line, /2 images; same-object share/);
  const j = JSON.parse(readFileSync(join(out, 'objects.json'), 'utf8'));
  const l0 = j.layers[0];
  assert.ok(l0.same_object > 0.99, `same ${l0.same_object}`);
  assert.ok(l0.other_object < 0.01 && l0.background < 0.01, JSON.stringify(l0));
  assert.ok(Math.abs(l0.same_object + l0.other_object + l0.background - 1) < 1e-6);
  assert.match(readFileSync(join(out, 'objects_per_image.csv'), 'utf8'), /^image,layer,head,query,query_patch/);
  // n and the bootstrap intervals: with two images the resamples are {a,a}, {a,b}, {b,b}, so the
  // 95 % percentile interval is exactly [min, max] of the two images' own values (from the CSV).
  assert.equal(l0.n, 2);
  assert.equal(j.bootstrap.resamples, 2000);
  assert.equal(typeof j.bootstrap.seed, 'number');
  const perImage = new Map<string, { same: number; other: number; background: number }>();
  const csv = readFileSync(join(out, 'objects_per_image.csv'), 'utf8').trim().split('\n').slice(1).map((r) => r.split(','));
  for (const [image, layer, , query, , t, d, b] of csv) {
    if (layer !== '0') continue;
    const e = perImage.get(image) ?? { same: 0, other: 0, background: 0 };
    // One head: same = (target query's target share + distractor query's distractor share) / 2.
    e.same += (query === 'target' ? Number(t) : Number(d)) / 2;
    e.other += (query === 'target' ? Number(d) : Number(t)) / 2;
    e.background += Number(b) / 2;
    perImage.set(image, e);
  }
  for (const k of ['same', 'other', 'background'] as const) {
    const v = [...perImage.values()].map((e) => e[k]);
    const iv = l0[`${k === 'background' ? 'background' : `${k}_object`}_interval`];
    assert.ok(Math.abs(iv[0] - Math.min(...v)) < 1e-9 && Math.abs(iv[1] - Math.max(...v)) < 1e-9, `${k}: ${iv} vs ${v}`);
    assert.ok(Math.abs((v[0] + v[1]) / 2 - l0[k === 'background' ? 'background' : `${k}_object`]) < 1e-9, 'the layer value is the mean of the images');
    // One head: its interval is the layer's.
    assert.deepEqual(l0.heads[0][`${k === 'background' ? 'background' : `${k}_object`}_interval`], iv);
  }
  // By query: the target query's target share, per image, from the CSV.
  const tt = csv.filter((r) => r[1] === '0' && r[3] === 'target').map((r) => Number(r[5]));
  assert.ok(Math.abs(l0.by_query_interval.target.target[0] - Math.min(...tt)) < 1e-9 && Math.abs(l0.by_query_interval.target.target[1] - Math.max(...tt)) < 1e-9);

  // Background head: b_q along the LN output of a background patch.
  const { spec, close } = await specOf(grp.path);
  let xbg: Float64Array;
  try {
    const blue = await writePng(join(root, 'blue.png'), 16, 16, () => BLUE);
    const { pixels, imageSize } = await loadPixels(spec, [blue]);
    const rt = await VitRuntime.create(spec, { outputs: { ln: [0] }, imageSize });
    const r = await rt.run(pixels, 1);
    await rt.close();
    xbg = Float64Array.from(r.ln!.subarray(rt.layout.patchStart * D, (rt.layout.patchStart + 1) * D));
  } finally {
    await close();
  }
  const bg = writeModel(join(root, 'bg'), 'hf-vit', plantedWeights('background', xbg));
  const out2 = join(root, 'out-bg');
  await runCmd(objectsCommand, [bg.path, data, '--out', out2, '--no-figures']);
  const b0 = JSON.parse(readFileSync(join(out2, 'objects.json'), 'utf8')).layers[0];
  assert.ok(b0.background > 0.99, `background ${b0.background}`);

  // The same dataset through a manifest.
  const man = join(root, 'manifest.json');
  writeFileSync(man, JSON.stringify({ images: [0, 1].map((k) => ({ image: `data/img${k}.png`, target: `data/img${k}.target.png`, distractor: `data/img${k}.distractor.png` })) }));
  const out3 = join(root, 'out-man');
  await runCmd(objectsCommand, [grp.path, man, '--out', out3, '--no-figures']);
  const m0 = JSON.parse(readFileSync(join(out3, 'objects.json'), 'utf8')).layers[0];
  assert.ok(Math.abs(m0.same_object - l0.same_object) < 1e-12);
});

test('objects: clear errors for missing, mismatched and odd masks', async () => {
  const m = writeModel(join(root, 'err-model'), 'hf-vit', makeLayoutWeights('hf-vit', { d: 16, heads: 2, layers: 1, patch: 4, image: 16, seed: 3 }));
  const mk = async (name: string, opts: { noDistractor?: boolean; size?: number; value?: number }) => {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    await writePng(join(dir, 'a.png'), 16, 16, () => BLUE);
    const sz = opts.size ?? 16;
    await writeMask(join(dir, 'a.target.png'), sz, sz, (x, y) => (x < 4 && y < 4 ? opts.value ?? 255 : 0));
    if (!opts.noDistractor) await writeMask(join(dir, 'a.distractor.png'), 16, 16, (x, y) => (x > 10 && y > 10 ? 255 : 0));
    return dir;
  };
  const out = join(root, 'err-out');
  await assert.rejects(runCmd(objectsCommand, [m.path, await mk('e1', { noDistractor: true }), '--out', out]), /a\.png: missing distractor mask .*a\.distractor\.png/);
  await assert.rejects(runCmd(objectsCommand, [m.path, await mk('e2', { size: 12 }), '--out', out]), /target mask is 12x12 but its image .*a\.png is 16x16/);
  await assert.rejects(runCmd(objectsCommand, [m.path, await mk('e3', { value: 128 }), '--out', out]), /target mask has value 128 at x=0, y=0; expected only 0 \(outside\) and 255/);
  const bad = join(root, 'bad.json');
  writeFileSync(bad, JSON.stringify({ images: [{ image: 'e1/a.png', target: 'e1/a.target.png' }] }));
  await assert.rejects(runCmd(objectsCommand, [m.path, bad, '--out', out]), /entry 0 has no "distractor" path/);
});

test('objects: an undecodable image among good ones is skipped and listed; progress lines in a pipe', async () => {
  const data = join(root, 'with-bad');
  await dataset(data);
  writeCorrupt(join(data, 'img2.png'));
  await writeMask(join(data, 'img2.target.png'), 16, 16, (x, y) => (x < 4 && y < 4 ? 255 : 0));
  await writeMask(join(data, 'img2.distractor.png'), 16, 16, (x, y) => (x > 11 && y > 11 ? 255 : 0));
  const grp = writeModel(join(root, 'group-skip'), 'hf-vit', plantedWeights('group'));
  const out = join(root, 'out-skip');
  const io = await runCmdIO(objectsCommand, [grp.path, data, '--out', out, '--batch', '1', '--progress-every', '1', '--no-figures']);
  assert.match(io.stdout, /2 images \(1 skipped\); same-object share/);
  assert.match(io.stdout, /skipped .*img2\.png: cannot decode/);
  assert.deepEqual(progressLines(io.stderr, 'objects').map((l) => l.split(' (')[0]), ['objects: 1/3 images', 'objects: 2/3 images', 'objects: 3/3 images']);
  const j = JSON.parse(readFileSync(join(out, 'objects.json'), 'utf8'));
  assert.equal(j.images, 2);
  assert.equal(j.layers[0].n, 2);
  assert.deepEqual(j.skipped.map((s: { path: string }) => s.path), [join(data, 'img2.png')]);
  assert.ok(j.layers[0].same_object > 0.99);
});
