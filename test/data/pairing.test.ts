import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeModel } from '../fixtures/models.js';
import { pairingCommand } from '../../src/cli/pairing.js';
import { topObject, layerPairing, pairOutcome } from '../../src/analysis/pairing.js';
import { ignoredIds, readInstanceMask } from '../../src/data/masks.js';
import { SCAN_SCHEMA_VERSION, SCHEMA_SQL, openScanDb, writeMeta } from '../../src/store/scan-db.js';
import { VitRuntime } from '../../src/runtime/vit-runtime.js';
import { BLUE, GREEN, PLANTED_D as D, RED, plantedWeights, progressLines, runCmd, runCmdIO, specOf, writeCorrupt, writeMask, writePalettePng, writePng } from './helpers.js';
import { loadPixels } from '../../src/images/load-pixels.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-pairing-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

test('topObject uses coverage-weighted means; layerPairing weights by σ', () => {
  const objs = [
    { id: 1, cov: [1, 1, 0, 0] },
    { id: 2, cov: [0, 0, 1, 0.5] },
  ];
  assert.equal(topObject([5, 0, 2, 2], objs), 1); // 2.5 vs 2
  assert.equal(topObject([0, 0, 3, 0], objs), 2); // 0 vs 2
  const l = layerPairing(
    [
      { layer: 0, head: 0, mode: 0, sigma: 3, images: 2, same: 2, probability: 1 },
      { layer: 0, head: 0, mode: 1, sigma: 1, images: 2, same: 0, probability: 0 },
    ],
    [0],
    2,
  );
  assert.equal(l[0].weighted_probability, 0.75);
  assert.equal(l[0].mean_probability, 0.5);
  // One object left: excluded; chance = the top query object's area share.
  assert.equal(pairOutcome([5, 0, 2, 2], [5, 0, 2, 2], [objs[0]]), null);
  const o = pairOutcome([5, 0, 2, 2], [0, 0, 3, 0], objs)!;
  assert.deepEqual([o.query, o.key, o.same], [1, 2, false]);
  assert.ok(Math.abs(o.chance - 2 / 3.5) < 1e-12);
});

test('instance masks: palette indices are read as ids (not colours), 255 is void by default', async () => {
  const dir = join(root, 'pal');
  mkdirSync(dir, { recursive: true });
  const f = (x: number, y: number) => (x < 3 ? 0 : x < 6 ? 7 : y < 4 ? 255 : 200 + y);
  for (const filter of [0, 1]) {
    const p = writePalettePng(join(dir, `p${filter}.png`), 10, 8, f, filter);
    const m = await readInstanceMask(p, { width: 10, height: 8, path: 'img.jpg' });
    assert.equal(m.kind, 'palette');
    for (let y = 0; y < 8; y++) for (let x = 0; x < 10; x++) assert.equal(m.ids[y * 10 + x], f(x, y), `filter ${filter} at ${x},${y}`);
  }
  const g = await readInstanceMask(await writeMask(join(dir, 'g.png'), 4, 4, (x) => x * 80), { width: 4, height: 4, path: 'img.jpg' });
  assert.equal(g.kind, 'grey');
  assert.deepEqual([...g.ids.slice(0, 4)], [0, 80, 160, 240], 'a grey mask stored as RGB (R = G = B) is grey');
  const c = await readInstanceMask(await writePng(join(dir, 'c.png'), 4, 4, (x) => (x < 2 ? [0, 0, 0] : [1, 2, 255])), { width: 4, height: 4, path: 'img.jpg' });
  assert.equal(c.kind, 'rgb');
  assert.deepEqual([...c.ids.slice(0, 4)], [0, 0, 65536 + 2 * 256 + 255, 65536 + 2 * 256 + 255]);
  assert.deepEqual([...ignoredIds('palette', undefined)], [255]);
  assert.deepEqual([...ignoredIds('grey', undefined)], [255]);
  assert.deepEqual([...ignoredIds('rgb', undefined)], []);
  assert.deepEqual([...ignoredIds('grey', 'none')], []);
  assert.deepEqual([...ignoredIds('rgb', [3, 9])], [3, 9]);
  await assert.rejects(readInstanceMask(join(dir, 'p0.png'), { width: 9, height: 8, path: 'img.jpg' }), /instance mask is 10x8 but its image img\.jpg is 9x8/);
});

test('pairing: known top query / key objects from a scan database', async () => {
  const model = writeModel(join(root, 'model'), 'hf-vit', plantedWeights('group'));
  const imgs = join(root, 'imgs'), masks = join(root, 'masks');
  mkdirSync(imgs);
  mkdirSync(masks);
  const paths: string[] = [];
  // Red square (instance 1), green square (instance 2), blue background (instance 3).
  const layouts = [
    { red: (x: number, y: number) => x < 8 && y < 8, green: (x: number, y: number) => x >= 8 && y >= 8 },
    { red: (x: number, y: number) => x >= 8 && y < 8, green: (x: number, y: number) => x < 8 && y >= 8 },
  ];
  for (const [k, L] of layouts.entries()) {
    paths.push(await writePng(join(imgs, `im${k}.png`), 16, 16, (x, y) => (L.red(x, y) ? RED : L.green(x, y) ? GREEN : BLUE)));
    await writeMask(join(masks, `im${k}.png`), 16, 16, (x, y) => (L.red(x, y) ? 1 : L.green(x, y) ? 2 : 3));
  }
  // LN outputs of a red and a green patch.
  const { spec, close } = await specOf(model.path);
  let xr: Float32Array, xg: Float32Array;
  try {
    const { pixels, imageSize } = await loadPixels(spec, [paths[0]]);
    const rt = await VitRuntime.create(spec, { outputs: { ln: [0] }, imageSize });
    const r = await rt.run(pixels, 1);
    await rt.close();
    const ps = rt.layout.patchStart;
    const unit = (t: number) => {
      const v = r.ln!.slice((ps + t) * D, (ps + t + 1) * D);
      const n = Math.hypot(...v);
      return v.map((x) => x / n);
    };
    xr = unit(0); // patch (0,0): red
    xg = unit(15); // patch (3,3): green
  } finally {
    await close();
  }
  // A scan database by hand: modes 0 (u = v = red: same), 1 (u red, v green: different), 2 (u = v = green: same).
  const run = join(root, 'run');
  mkdirSync(run);
  const db = openScanDb(join(run, 'run.db'), { create: true });
  db.exec(SCHEMA_SQL);
  writeMeta(db, {
    schema_version: SCAN_SCHEMA_VERSION,
    model: { id: 'planted', input: model.path, family: 'hf-vit', layers: 1, heads: 1, width: D, head_dim: D },
    layers: [0],
    embedding: 'ln',
    top_k: 5,
    image_size: [16, 16],
    status: 'complete',
  });
  const sig = [3, 1, 2];
  const U = new Float32Array(D * D), V = new Float32Array(D * D);
  const pairs = [[xr, xr], [xr, xg], [xg, xg]];
  pairs.forEach(([u, v], n) => {
    U.set(u, n * D);
    V.set(v, n * D);
  });
  for (let n = 0; n < D; n++) db.prepare('INSERT INTO modes VALUES (0, 0, ?, ?, 0, 0)').run(n, sig[n] ?? 0.1);
  db.prepare('INSERT INTO vectors VALUES (0, 0, ?, ?)').run(Buffer.from(U.buffer), Buffer.from(V.buffer));
  paths.forEach((p, id) => db.prepare(`INSERT INTO images (id, path, source, container, status) VALUES (?, ?, 'file', ?, 'done')`).run(id, p, p));
  const ins = db.prepare('INSERT INTO topk VALUES (0, 0, ?, ?, ?, ?, ?, 1, 1, 1, 0, 0, 0, 0, 0, 0)');
  for (let n = 0; n < 3; n++)
    paths.forEach((p, id) => {
      ins.run(n, 1, id, id, p);
      ins.run(n, -1, id, id, p); // negative sign: ignored
    });
  db.close();

  const out = join(root, 'out');
  const line = await runCmd(pairingCommand, [run, masks, '--out', out]);
  assert.match(line, /2 images \(0 skipped\)/);
  const j = JSON.parse(readFileSync(join(out, 'pairing.json'), 'utf8'));
  assert.deepEqual(
    j.modes.map((m: { mode: number; images: number; same: number }) => [m.mode, m.images, m.same]),
    [
      [0, 2, 2],
      [1, 2, 0],
      [2, 2, 2],
    ],
  );
  assert.ok(Math.abs(j.layers[0].weighted_probability - 5 / 6) < 1e-12);
  assert.ok(Math.abs(j.layers[0].mean_probability - 2 / 3) < 1e-12);
  assert.match(readFileSync(join(out, 'pairing.svg'), 'utf8'), /<svg/);

  // Errors: a missing mask, a mask of the wrong size.
  rmSync(join(masks, 'im1.png'));
  await assert.rejects(runCmd(pairingCommand, [run, masks, '--out', out]), /im1\.png: no instance mask in .* \(expected im1\.png or im1_seg\.png\)/);
  await writeMask(join(masks, 'im1.png'), 8, 8, () => 1);
  await assert.rejects(runCmd(pairingCommand, [run, masks, '--out', out]), /instance mask is 8x8 but its image .*im1\.png is 16x16/);
  await assert.rejects(runCmd(pairingCommand, [root, masks, '--out', out]), /no run\.db/);
});

/** The LN outputs (unit length) of a pure red, green and blue patch of the planted model. */
async function colourVectors(modelPath: string, dir: string): Promise<{ r: Float64Array; g: Float64Array; b: Float64Array }> {
  const img = await writePng(join(dir, 'rgb.png'), 16, 16, (x) => (x < 4 ? RED : x < 8 ? GREEN : BLUE));
  const { spec, close } = await specOf(modelPath);
  try {
    const { pixels, imageSize } = await loadPixels(spec, [img]);
    const rt = await VitRuntime.create(spec, { outputs: { ln: [0] }, imageSize });
    const out = await rt.run(pixels, 1);
    await rt.close();
    const ps = rt.layout.patchStart;
    const unit = (t: number) => {
      const v = Float64Array.from(out.ln!.subarray((ps + t) * D, (ps + t + 1) * D));
      const n = Math.hypot(...v);
      return v.map((x) => x / n);
    };
    return { r: unit(0), g: unit(1), b: unit(2) };
  } finally {
    await close();
  }
}

/** The vector w in span(a, b, c) with w·a = ta, w·b = tb, w·c = tc (a planted ranking of the three colours). */
function planted(a: Float64Array, b: Float64Array, c: Float64Array, t: [number, number, number]): Float32Array {
  const X = [a, b, c];
  const G = X.map((p) => X.map((q) => p.reduce((s, v, i) => s + v * q[i], 0)));
  const det = (m: number[][]) => m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  const dG = det(G);
  const coef = [0, 1, 2].map((k) => det(G.map((row, i) => row.map((v, j) => (j === k ? t[i] : v)))) / dG); // Cramer
  const w = new Float32Array(D);
  for (let i = 0; i < D; i++) w[i] = coef[0] * a[i] + coef[1] * b[i] + coef[2] * c[i];
  for (const [k, x] of X.entries()) assert.ok(Math.abs(x.reduce((s, v, i) => s + v * w[i], 0) - t[k]) < 1e-4, 'planted dot products');
  return w;
}

/** A scan database of one layer / head whose modes are (u_n, v_n, σ_n) and whose top-k lists hold every image. */
function scanDb(run: string, modelPath: string, images: string[], modes: { u: ArrayLike<number>; v: ArrayLike<number>; sigma: number }[]): void {
  mkdirSync(run, { recursive: true });
  const db = openScanDb(join(run, 'run.db'), { create: true });
  db.exec(SCHEMA_SQL);
  writeMeta(db, {
    schema_version: SCAN_SCHEMA_VERSION,
    model: { id: 'planted', input: modelPath, family: 'hf-vit', layers: 1, heads: 1, width: D, head_dim: D },
    layers: [0],
    embedding: 'ln',
    top_k: 5,
    image_size: [16, 16],
    status: 'complete',
  });
  const U = new Float32Array(D * D), V = new Float32Array(D * D);
  modes.forEach((m, n) => {
    U.set(m.u, n * D);
    V.set(m.v, n * D);
  });
  for (let n = 0; n < D; n++) db.prepare('INSERT INTO modes VALUES (0, 0, ?, ?, 0, 0)').run(n, modes[n]?.sigma ?? 0.1);
  db.prepare('INSERT INTO vectors VALUES (0, 0, ?, ?)').run(Buffer.from(U.buffer), Buffer.from(V.buffer));
  images.forEach((p, id) => db.prepare(`INSERT INTO images (id, path, source, container, status) VALUES (?, ?, 'file', ?, 'done')`).run(id, p, p));
  const ins = db.prepare('INSERT INTO topk VALUES (0, 0, ?, ?, ?, ?, ?, 1, 1, 1, 0, 0, 0, 0, 0, 0)');
  for (let n = 0; n < modes.length; n++) images.forEach((p, id) => ins.run(n, 1, id, id, p));
  db.close();
}

test('pairing: 255 borders ignored, single-object images left out, chance baseline and bootstrap interval (planted answer)', async () => {
  const model = writeModel(join(root, 'model2'), 'hf-vit', plantedWeights('group'));
  const dir = join(root, 'planted');
  const imgs = join(dir, 'imgs'), masks = join(dir, 'masks');
  mkdirSync(imgs, { recursive: true });
  mkdirSync(masks, { recursive: true });
  const x = await colourVectors(model.path, dir);
  // Quadrants of 2×2 patches.
  const TL = (px: number, py: number) => px < 8 && py < 8, TR = (px: number, py: number) => px >= 8 && py < 8;
  const BL = (px: number, py: number) => px < 8 && py >= 8, BR = (px: number, py: number) => px >= 8 && py >= 8;
  const paths: string[] = [];
  // a0, a1: red (1), green (2), blue (3): three objects, areas 4, 4, 8 patches.
  for (const [k, [red, green]] of [[TL, BR], [TR, BL]].entries()) {
    paths.push(await writePng(join(imgs, `a${k}.png`), 16, 16, (px, py) => (red(px, py) ? RED : green(px, py) ? GREEN : BLUE)));
    await writeMask(join(masks, `a${k}.png`), 16, 16, (px, py) => (red(px, py) ? 1 : green(px, py) ? 2 : 3));
  }
  // a2: red (1), blue (2), and a green region labelled 255 (VOC "void"), as a palette PNG.
  paths.push(await writePng(join(imgs, 'a2.png'), 16, 16, (px, py) => (TL(px, py) ? RED : BR(px, py) ? GREEN : BLUE)));
  writePalettePng(join(masks, 'a2.png'), 16, 16, (px, py) => (TL(px, py) ? 1 : BR(px, py) ? 255 : 2), 1);
  // a3: one object (red) on an unlabelled background.
  paths.push(await writePng(join(imgs, 'a3.png'), 16, 16, (px, py) => (TL(px, py) ? RED : BLUE)));
  writePalettePng(join(masks, 'a3.png'), 16, 16, (px, py) => (TL(px, py) ? 1 : 0));
  // a4: not an image (its mask is fine): skipped and listed.
  paths.push(writeCorrupt(join(imgs, 'a4.png')));
  await writeMask(join(masks, 'a4.png'), 16, 16, () => 1);
  // Modes: 0: u = v = red; 1: u = red, v ranks green > red > blue; 2: u = v rank green > blue > red.
  const v1 = planted(x.r, x.g, x.b, [2, 3, 1]);
  const w2 = planted(x.r, x.g, x.b, [1, 3, 2]);
  const run = join(dir, 'run');
  scanDb(run, model.path, paths, [
    { u: x.r, v: x.r, sigma: 3 },
    { u: x.r, v: v1, sigma: 1 },
    { u: w2, v: w2, sigma: 2 },
  ]);

  const out = join(dir, 'out');
  const io = await runCmdIO(pairingCommand, [run, masks, '--out', out, '--batch', '2', '--progress-every', '1']);
  assert.match(io.stdout, /4 images \(1 skipped\); 3 with two or more objects, 1 with fewer left out/);
  assert.match(io.stdout, /skipped .*a4\.png: cannot decode/);
  assert.deepEqual(progressLines(io.stderr, 'pairing').map((l) => l.split(' (')[0]), ['pairing: 2/5 images', 'pairing: 4/5 images', 'pairing: 5/5 images']);
  const j = JSON.parse(readFileSync(join(out, 'pairing.json'), 'utf8'));
  // Per mode: a0, a1 are 3-object images; a2 has red and blue once 255 is ignored (mode 1's key: red).
  assert.deepEqual(
    j.modes.map((m: { mode: number; images: number; same: number; single: number }) => [m.mode, m.images, m.same, m.single]),
    [
      [0, 3, 3, 1],
      [1, 3, 1, 1],
      [2, 3, 3, 1],
    ],
  );
  const L0 = j.layers[0];
  const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);
  near(L0.weighted_probability, 16 / 18, 'σ-weighted (3·1 + 1·⅓ + 2·1)/6');
  near(L0.mean_probability, 7 / 9, 'plain mean');
  assert.equal(L0.n, 3);
  assert.equal(L0.n_single, 1);
  // Chance: area share of the top query object (a0, a1: 4/16; a2: red 4/12, blue 8/12).
  near(j.modes[0].baseline, (1 / 4 + 1 / 4 + 1 / 3) / 3, 'mode 0 baseline');
  near(j.modes[2].baseline, (1 / 4 + 1 / 4 + 2 / 3) / 3, 'mode 2 baseline');
  near(L0.baseline, 17 / 54, 'σ-weighted baseline');
  near(L0.excess, 16 / 18 - 17 / 54, 'excess');
  // Bootstrap over the 3 usable images: only a2's count w matters, p = (5 + w/3)/6 with w ~ Bin(3, 1/3):
  // the 2.5 % quantile is w = 0 (29.6 % mass), the 97.5 % one is w = 3 (3.7 % mass).
  near(L0.interval[0], 5 / 6, 'interval lo');
  near(L0.interval[1], 1, 'interval hi');
  assert.ok(L0.excess_interval[0] <= L0.excess && L0.excess <= L0.excess_interval[1]);
  // Plain mean (1 + w/3 + 1)/3: from 2/3 (w = 0) to 1 (w = 3).
  near(L0.mean_interval[0], 2 / 3, 'mean interval lo');
  near(L0.mean_interval[1], 1, 'mean interval hi');
  // Per mode: Clopper–Pearson (R binom.test(1, 3) and binom.test(3, 3)).
  assert.ok(Math.abs(j.modes[1].interval[0] - 0.008403759) < 1e-7 && Math.abs(j.modes[1].interval[1] - 0.9057007) < 1e-7);
  assert.ok(Math.abs(j.modes[0].interval[0] - 0.2924018) < 1e-7 && j.modes[0].interval[1] === 1);
  assert.deepEqual(j.bootstrap.resamples, 2000);
  assert.equal(j.images, 4);
  assert.equal(j.images_used, 3);
  assert.equal(j.images_single, 1);
  assert.deepEqual(j.skipped.map((s: { path: string }) => s.path), [paths[4]]);
  assert.match(readFileSync(join(out, 'pairing.csv'), 'utf8'), /^layer,head,mode,sigma,images,same,probability,baseline,single/);

  // --ignore-label none: the void region is an object (green): mode 1's key lands on it.
  const out2 = join(dir, 'out-none');
  await runCmd(pairingCommand, [run, masks, '--out', out2, '--ignore-label', 'none', '--no-figures']);
  const k = JSON.parse(readFileSync(join(out2, 'pairing.json'), 'utf8'));
  assert.deepEqual(k.modes.map((m: { same: number }) => m.same), [3, 0, 3]);
  near(k.layers[0].weighted_probability, 5 / 6, 'ignore none');
  assert.deepEqual(k.ignore_label, []);
  await assert.rejects(runCmd(pairingCommand, [run, masks, '--out', out2, '--ignore-label', 'x']), /--ignore-label x: expected mask values/);
});
