import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { listImages } from '../../src/images/sources.js';
import { scanIntoDir } from '../../src/jobs/scan.js';
import { normaliseMap, overlayRgb, upsampleGrid } from '../../src/report/overlay.js';
import { modesFigure } from '../../src/report/figures/modes.js';
import { parseModes } from '../../src/cli/figure.js';
import { runCli } from './cli.js';
import { writeImage } from './helpers.js';
import { assertGolden } from '../report/golden.js';
import { loadSpec } from '../../src/arch/load.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-scan-fig-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

test('overlay colours: query red, key cyan, both white, over the dimmed image', () => {
  const rgb = new Uint8Array([100, 100, 100, 100, 100, 100, 100, 100, 100, 200, 0, 50]);
  const q = new Float64Array([1, 0, 1, 0]);
  const k = new Float64Array([1, 1, 0, 0]);
  const o = overlayRgb(rgb, 2, 2, q, k, { dim: 0.5 });
  assert.deepEqual(Array.from(o), [255, 255, 255, 50, 255, 255, 255, 50, 50, 100, 0, 25]);
  assert.deepEqual(Array.from(overlayRgb(rgb, 2, 2, null, k, { dim: 0.5 }).subarray(0, 3)), [50, 255, 255]);
  assert.deepEqual(Array.from(normaliseMap([-1, 0, 2, 4])), [0, 0, 0.5, 1]);
  assert.deepEqual(Array.from(normaliseMap([-1, -2])), [0, 0]);
  const up = upsampleGrid([0, 1, 2, 3], 2, 2, 4, 4);
  assert.equal(up[0], 0);
  assert.equal(up[15], 3);
  assert.ok(Math.abs(up[5] - 0.75) < 1e-12); // pixel (1,1): a quarter of the way from each corner
  assert.deepEqual(Array.from(upsampleGrid([7], 1, 1, 2, 3)), [7, 7, 7, 7, 7, 7]);
});

test('--modes parsing', () => {
  assert.deepEqual(parseModes('0-9', 16), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(parseModes('0-9', 4), [0, 1, 2, 3]);
  assert.deepEqual(parseModes('3,1,3', 8), [3, 1]);
  assert.throws(() => parseModes('5-2', 8), /backwards/);
  assert.throws(() => parseModes('9', 8), /modes 0..7/);
  assert.throws(() => parseModes('a', 8), /expected 0-based modes/);
});

// A 1x1 transparent PNG stands in for every tile: the SVG is then byte-for-byte stable.
const TILE = 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

test('modes figure layout (golden SVG): rows, labels, tiles, markers, captions', () => {
  const rows = [0, 1].map((m) => ({
    label: `L3 H5 M${m} ${m ? '−' : '+'}`,
    lines: [`c = 0.${4 - m}00`, 'rel. c = 0.210', 'σ = 3.21'],
    tiles: [0, 1, 2].map((r) => ({ href: r === 2 && m === 1 ? null : TILE, caption: `#${r} S ${(9 - r).toFixed(2)}`, name: ['tench', 'great white shark and a very long class name', 'img_0042'][r], qToken: 5 * r, kToken: r ? 3 : 0 })),
  }));
  const overlay = modesFigure({ title: 'vit: layer 3, head 5', subtitle: 'top images by S = max Q × max K of 100 images · LayerNorm output', rows, style: 'overlay', grid: [4, 4], note: 'indices 0-based' });
  assertGolden('modes-overlay.svg', overlay);
  assert.equal((overlay.match(/<image /g) ?? []).length, 5);
  assert.match(overlay, /L3 H5 M1 −/);
  assert.match(overlay, />tench</);
  assert.match(overlay, />great white shark …</, 'long names are shortened to the tile');
  assert.match(overlay, /unavailable/);
  const separate = modesFigure({ title: 'vit: layer 3, head 5', rows: rows.map((r) => ({ ...r, tiles: r.tiles.map((t) => ({ ...t, hrefKey: t.href })) })), style: 'separate', grid: [4, 4] });
  assertGolden('modes-separate.svg', separate);
  assert.equal((separate.match(/<image /g) ?? []).length, 10);
  assert.throws(() => modesFigure({ title: 'x', rows: [], style: 'overlay' }), /no rows/);
});

test('figure modes from a scan: PNG and SVG, warnings for changed and missing images, wrong model refused', async () => {
  const model = writeModel(join(root, 'model'), 'hf-vit', makeLayoutWeights('hf-vit', { d: 24, heads: 2, layers: 2, patch: 4, image: 16, seed: 3 })).path;
  const imgs = join(root, 'imgs');
  for (let i = 0; i < 8; i++) await writeImage(join(imgs, `i${i}.png`), 40 + i, 20, 16);
  const out = join(root, 'run');
  const { spec, close } = await loadSpec(model, {});
  try {
    await scanIntoDir(spec, out, { listing: await listImages([imgs]), inputs: [imgs], modelInput: model }, { topK: 3, batch: 4 });
  } finally {
    await close();
  }
  const cap = async (args: string[]) => {
    let stdout = '';
    let stderr = '';
    const ow = process.stdout.write.bind(process.stdout);
    const ew = process.stderr.write.bind(process.stderr);
    process.stdout.write = ((s: string | Uint8Array, ...r: unknown[]) => (typeof s === 'string' ? ((stdout += s), true) : (ow as (...a: unknown[]) => boolean)(s, ...r))) as typeof process.stdout.write;
    process.stderr.write = ((s: string | Uint8Array, ...r: unknown[]) => (typeof s === 'string' ? ((stderr += s), true) : (ew as (...a: unknown[]) => boolean)(s, ...r))) as typeof process.stderr.write;
    try {
      return { status: await runCli(args), stdout, stderr };
    } finally {
      process.stdout.write = ow;
      process.stderr.write = ew;
    }
  };
  let r = await cap(['figure', 'modes', out, '--layer', '1', '--head', '1', '--modes', '0-2', '--sign', 'both', '--out', join(root, 'f.png')]);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /warning/, 'no warnings: recomputed scores match the scan');
  assert.match(r.stderr, /^figure: \d+\/\d+ images/m, 'progress in a pipe');
  assert.match(r.stdout, /L1 H1: 3 modes, 18 images/);
  const meta = await sharp(readFileSync(join(root, 'f.png'))).metadata();
  assert.equal(meta.format, 'png');
  assert.ok(meta.height! > 6 * 96 && meta.width! > 3 * 96, `${meta.width}x${meta.height}`);
  r = await cap(['figure', 'modes', out, '--layer', '0', '--head', '0', '--modes', '1', '--style', 'separate', '--images', '2', '--out', join(root, 'f.svg')]);
  assert.equal(r.status, 0, r.stderr);
  const svg = readFileSync(join(root, 'f.svg'), 'utf8');
  assert.equal((svg.match(/<image /g) ?? []).length, 4);
  assert.match(svg, /L0 H0 M1 \+/);

  // Change one top image and delete another: warned about, drawn as unavailable, never fatal.
  const rows = JSON.parse((await cap(['top', out, '--layer', '0', '--head', '0', '--mode', '1', '--sign', '+', '--json'])).stdout);
  const [first, second] = rows.lists[0].entries.map((e: { path: string }) => e.path);
  await writeImage(first, 999, 20, 16);
  unlinkSync(second);
  r = await cap(['figure', 'modes', out, '--layer', '0', '--head', '0', '--modes', '1', '--out', join(root, 'g.svg')]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /changed since the scan/);
  assert.match(r.stderr, /cannot read it any more/);
  assert.match(readFileSync(join(root, 'g.svg'), 'utf8'), /unavailable/);

  const other = writeModel(join(root, 'other'), 'hf-vit', makeLayoutWeights('hf-vit', { d: 24, heads: 2, layers: 2, patch: 4, image: 16, seed: 4 })).path;
  r = await cap(['figure', 'modes', out, '--layer', '0', '--head', '0', '--model', other, '--out', join(root, 'h.png')]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /q\/k weights differ from those the scan used/);
  r = await cap(['figure', 'modes', out, '--layer', '0', '--head', '0', '--out', join(root, 'h.jpg')]);
  assert.match(r.stderr, /give a \.png or \.svg/);
  writeFileSync(join(root, 'unused'), '');
});
