/**
 * `qkscope export` in Node: the files of the site (every data file a script registering its
 * value), what they hold against independent references (summary.json for the numbers, the
 * scan's own scores for the recomputed maps, float16 decoding, each image once), the size
 * bounds (--modes-per-head, --no-model, --max-model-mb) and the CLI's one-line errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import vm from 'node:vm';
import Database from 'better-sqlite3';
import type * as A from '../../src/api-types.js';
import type { SiteIndex, SiteLayer, SiteModeMaps } from '../../src/site-types.js';
import { decodeHalf, encodeHalf, fromHalfBits, toHalfBits } from '../../src/io/float16.js';
import { runExport, writeExport } from '../../src/jobs/export.js';
import { CLI, tempDir } from '../helpers/paths.js';
import { EFIX, exportFixture } from './fixture.js';

/** The value a data script registers. */
export function readData<T>(site: string, key: string): T {
  const code = readFileSync(join(site, 'data', `${key}.js`), 'utf8');
  let got: { key: string; value: unknown } | null = null;
  vm.runInNewContext(code, { qkscopeData: (k: string, v: unknown) => (got = { key: k, value: v }) });
  assert.ok(got, `${key}: the script registered nothing`);
  assert.equal((got as { key: string }).key, key);
  // Through JSON: the value lives in another realm (vm), whose arrays deepEqual would not match.
  return JSON.parse(JSON.stringify((got as { value: T }).value)) as T;
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)).map((x) => `${n}/${x}`) : [n]));
}

test('float16: exact for representable values, round to nearest even, overflow, subnormals', () => {
  for (const [x, bits] of [
    [0, 0],
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [2 ** -24, 0x0001],
    [2 ** -14, 0x0400],
    [1 + 2 ** -11, 0x3c00], // a tie: to even
    [1 + 3 * 2 ** -11, 0x3c02], // a tie: to even (up)
    [1e6, 0x7c00],
  ] as [number, number][]) {
    assert.equal(toHalfBits(x), bits, `${x}`);
  }
  // Round trip of every finite half.
  for (let h = 0; h < 0x7c00; h++) assert.equal(toHalfBits(fromHalfBits(h)), h);
  // Relative error of a round trip ≤ 2^-11 in the normal range.
  const xs = Array.from({ length: 1000 }, (_, i) => Math.sin(i * 1.7) * 10 ** ((i % 9) - 4));
  const back = decodeHalf(encodeHalf(xs));
  xs.forEach((x, i) => {
    if (Math.abs(x) > 2 ** -14) assert.ok(Math.abs(back[i] - x) <= Math.abs(x) * 2 ** -11, `${x} → ${back[i]}`);
  });
});

test('export: every view’s data, maps recomputed to the scan’s scores, each image once', async () => {
  const fx = await exportFixture();
  const site = join(tempDir('qkscope-site-'), 'site');
  const r = await runExport([fx.runsDir], { modesPerHead: 2, imageSize: 24, model: true, threads: 1 });
  const w = await writeExport(r, site);
  const files = walk(site);
  assert.equal(w.files, files.length);
  assert.equal(w.bytes, files.reduce((a, f) => a + statSync(join(site, f)).size, 0));
  for (const f of ['index.html', 'app.js', 'app.css', 'export.json', 'data/index.js']) assert.ok(files.includes(f), f);
  assert.ok(!files.some((f) => f.endsWith('.partial')));
  const manifest = JSON.parse(readFileSync(join(site, 'export.json'), 'utf8'));
  assert.equal(manifest.command, 'export');
  assert.equal(manifest.site.files, files.length);
  assert.ok(Object.keys(manifest.files).length < 20, 'files are described by group, not one line each');

  const index = readData<SiteIndex>(site, 'index');
  assert.equal(index.format, 'qkscope-site/1');
  assert.deepEqual(
    index.runs.runs.map((x) => x.id),
    ['group/vit-b', 'vit-a'],
    'ids as serve gives them (relative to the folder)',
  );
  const a = index.meta['vit-a'];
  const b = index.meta['group/vit-b'];
  assert.equal(a.modes_per_head, 2);
  assert.equal(b.modes_per_head, 0, 'no scan, no images');
  assert.ok(a.model && b.model, 'both models included');
  assert.ok(index.wasm_chunks >= 1);
  assert.equal(b.model!.card.has_rel_pos, true);
  // The model: its chunks put back together are the .onnx of export-onnx.
  const onnx = Buffer.concat(Array.from({ length: a.model!.chunks }, (_, i) => Buffer.from(readData<string>(site, `model/${a.slug}/onnx.${i}`), 'base64')));
  assert.equal(onnx.length, a.model!.bytes);
  assert.ok(onnx.length > a.model!.card.weight_bytes);

  // Numbers against summary.json.
  const summary = JSON.parse(readFileSync(join(fx.runsDir, 'vit-a', 'summary.json'), 'utf8'));
  const L = summary.dims.layers;
  const dh = summary.dims.head_dim;
  const db = new Database(join(fx.runsDir, 'vit-a', 'run.db'), { readonly: true });
  const topk = db.prepare('SELECT t.layer, t.head, t.mode, t.sign, t.rank, t.score, i.path FROM topk t JOIN images i ON i.id = t.image_id').all() as { layer: number; head: number; mode: number; sign: number; rank: number; score: number; path: string }[];
  db.close();
  const usedImages = new Set<string>();
  for (let l = 0; l < L; l++) {
    const layer = readData<SiteLayer>(site, `runs/${a.slug}/L${l}`);
    assert.equal(layer.heads.length, EFIX.heads);
    for (let h = 0; h < EFIX.heads; h++) {
      const hd: A.HeadDetail = layer.heads[h];
      const sh = summary.layers[l].heads[h];
      assert.deepEqual(hd.modes.map((m) => m.sigma), sh.sigma);
      assert.deepEqual(hd.modes.map((m) => m.cosine), sh.cosine);
      assert.equal(hd.weighted_cosine, sh.weighted_cosine);
      assert.deepEqual(
        hd.modes.map((m) => m.has_images),
        Array.from({ length: dh }, (_, n) => n < 2),
        'images only for the stored modes',
      );
      for (let n = 0; n < dh; n++) {
        const md = layer.modes[h][n];
        assert.equal(md.sigma, sh.sigma[n]);
        if (n >= 2) {
          assert.deepEqual(md.top, []);
          assert.ok(!existsSync(join(site, 'data', 'runs', a.slug, 'maps', `${l}-${h}-${n}.js`)));
          continue;
        }
        const expected = topk.filter((t) => t.layer === l && t.head === h && t.mode === n);
        assert.equal(md.top.length, expected.length);
        const maps = readData<SiteModeMaps>(site, `runs/${a.slug}/maps/${l}-${h}-${n}`);
        assert.deepEqual(maps.grid, [EFIX.image / EFIX.patch, EFIX.image / EFIX.patch]);
        assert.equal(maps.images.length, expected.length);
        for (const im of maps.images) {
          const t = expected.find((x) => x.sign === im.sign && x.rank === im.rank)!;
          assert.ok(im.maps, `L${l} H${h} M${n}: maps computed`);
          // Recomputed through the runtime: the scan's own score (its independent pass).
          assert.ok(Math.abs(im.maps!.score - t.score) <= 1e-4 * Math.max(1, Math.abs(t.score)), `score ${im.maps!.score} vs scan ${t.score}`);
          const q = decodeHalf(Buffer.from(im.maps!.q, 'base64'));
          const k = decodeHalf(Buffer.from(im.maps!.k, 'base64'));
          assert.equal(q.length, (EFIX.image / EFIX.patch) ** 2);
          assert.ok(Math.abs(Math.max(...q) - im.maps!.qmax) <= Math.abs(im.maps!.qmax) * 2 ** -10);
          assert.ok(Math.abs(Math.max(...k) - im.maps!.kmax) <= Math.abs(im.maps!.kmax) * 2 ** -10);
          assert.equal(im.label, t.path.split('/').pop());
          assert.ok(files.includes(`data/img/${im.id!.slice(1)}.js`), 'its image is in the site');
          usedImages.add(im.id!);
        }
      }
    }
  }
  const imgs = files.filter((f) => f.startsWith('data/img/'));
  assert.equal(imgs.length, usedImages.size, 'each unique top image stored once');
  const uri = readData<string>(site, `img/${[...usedImages][0].slice(1)}`);
  assert.match(uri, /^data:image\/jpeg;base64,\/9j\//);
  // The head weights of the page's decomposition: float32 rows of W_q, W_k.
  const hw = readData<{ heads: { wq: string }[] }>(site, `model/${a.slug}/heads.0`);
  assert.equal(Buffer.from(hw.heads[0].wq, 'base64').length, (EFIX.d / EFIX.heads) * EFIX.d * 4);
});

test('export --no-model / --max-model-mb / --modes-per-head 0: smaller sites that say what they left out', async () => {
  const fx = await exportFixture();
  const base = tempDir('qkscope-site-');
  const small = join(base, 'small');
  await writeExport(await runExport([join(fx.runsDir, 'vit-a')], { modesPerHead: 0, model: false }), small);
  const idx = readData<SiteIndex>(small, 'index');
  assert.equal(idx.wasm_chunks, 0);
  assert.equal(idx.meta['vit-a'].model, null);
  assert.match(idx.meta['vit-a'].model_note!, /--no-model/);
  assert.ok(!walk(small).some((f) => f.startsWith('data/img/') || f.startsWith('data/model/') || f.startsWith('data/ort/')));
  const capped = join(base, 'capped');
  await writeExport(await runExport([join(fx.runsDir, 'vit-a')], { modesPerHead: 1, maxModelMb: 0.001 }), capped);
  const c = readData<SiteIndex>(capped, 'index');
  assert.equal(c.meta['vit-a'].model, null);
  assert.match(c.meta['vit-a'].model_note!, /over --max-model-mb/);
  // An earlier export is replaced; a folder holding something else is refused.
  await writeExport(await runExport([join(fx.runsDir, 'vit-a')], { modesPerHead: 0, model: false }), capped);
  assert.ok(!walk(capped).some((f) => f.startsWith('data/img/')), 'the previous export’s images are gone');
  const other = join(base, 'other');
  mkdirSync(other);
  writeFileSync(join(other, 'notes.txt'), 'mine');
  await assert.rejects(async () => writeExport(await runExport([join(fx.runsDir, 'vit-a')], { modesPerHead: 0, model: false }), other), /not empty and not an earlier export/);
  assert.equal(readFileSync(join(other, 'notes.txt'), 'utf8'), 'mine');
});

test('export CLI: prints the size and file count; one-line errors; --help has defaults and an example', async () => {
  const fx = await exportFixture();
  const out = join(tempDir('qkscope-site-cli-'), 'site');
  const r = spawnSync(process.execPath, [CLI, 'export', join(fx.runsDir, 'vit-a'), '--out', out, '--modes-per-head', '1', '--image-size', '32', '--threads', '1'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^wrote .*site: \d+ files, [\d.]+ MB; open .*index\.html\n$/);
  const bad = spawnSync(process.execPath, [CLI, 'export', join(fx.root, 'nope'), '--out', out], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  assert.match(bad.stderr, /nope: no such run directory/);
  const help = spawnSync(process.execPath, [CLI, 'export', '--help'], { encoding: 'utf8' });
  assert.match(help.stdout, /--modes-per-head <n>.*\(default: 16\)/s);
  assert.match(help.stdout, /--image-size <px>.*\(default: 160\)/s);
  assert.match(help.stdout, /--max-model-mb <n>.*\(default: 100\)/s);
  assert.match(help.stdout, /Example:\n\s+qkscope export /);
});
