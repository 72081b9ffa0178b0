import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeModel } from '../fixtures/models.js';
import { pairingCommand } from '../../src/cli/pairing.js';
import { topObject, layerPairing } from '../../src/analysis/pairing.js';
import { SCAN_SCHEMA_VERSION, SCHEMA_SQL, openScanDb, writeMeta } from '../../src/store/scan-db.js';
import { VitRuntime } from '../../src/runtime/vit-runtime.js';
import { BLUE, GREEN, PLANTED_D as D, RED, plantedWeights, runCmd, specOf, writeMask, writePng } from './helpers.js';
import { loadPixels } from '../../src/images/preprocess.js';

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
