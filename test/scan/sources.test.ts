import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expandBraces, listImages, ImageReader } from '../../src/images/sources.js';
import { indexTar } from '../../src/images/tar.js';
import { parseShard, shardRange, shardPath } from '../../src/images/shard.js';
import { TopKLists, encodeEntries, decodeEntries, ranksBefore } from '../../src/analysis/topk.js';
import { UserError } from '../../src/errors.js';
import { writeImageParquet, writeParquet } from './parquet-write.js';
import { encodeImage, writeImage, writeTar } from './helpers.js';
import { CentreSums } from '../../src/analysis/anisotropy.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-scan-src-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

test('brace expansion (webdataset shard ranges)', () => {
  assert.deepEqual(expandBraces('s-{000..003}.tar'), ['s-000.tar', 's-001.tar', 's-002.tar', 's-003.tar']);
  assert.deepEqual(expandBraces('{a,b}/{1..2}'), ['a/1', 'a/2', 'b/1', 'b/2']);
  assert.deepEqual(expandBraces('plain.tar'), ['plain.tar']);
  assert.deepEqual(expandBraces('x{y}z'), ['x{y}z']);
  assert.deepEqual(expandBraces('{3..1}'), ['3', '2', '1']);
});

test('folders: recursive, sorted by name at each level, hidden and non-image files ignored', async () => {
  const d = join(root, 'walk');
  await writeImage(join(d, 'b.png'), 1);
  await writeImage(join(d, 'a', 'z.jpg'), 2, 16, 16, 'jpeg');
  await writeImage(join(d, 'a', 'y.WEBP'), 3, 16, 16, 'webp');
  await writeImage(join(d, 'c.png'), 4);
  writeFileSync(join(d, 'notes.txt'), 'x');
  writeFileSync(join(d, '.hidden.png'), 'x');
  mkdirSync(join(d, 'loop'));
  symlinkSync(d, join(d, 'loop', 'back'));
  const l = await listImages([d]);
  assert.deepEqual(
    l.entries.map((e) => e.locator.slice(d.length + 1)),
    ['a/y.WEBP', 'a/z.jpg', 'b.png', 'c.png'],
  );
  assert.equal(l.ignored, 2);
  // Same list, same hash; another order, another hash.
  assert.equal((await listImages([d])).hash, l.hash);
  const single = await listImages([join(d, 'c.png'), join(d, 'b.png')]);
  assert.notEqual(single.hash, l.hash);
  assert.deepEqual(single.entries.map((e) => e.kind), ['file', 'file']);
});

test('clear errors: missing path, empty folder, folder without images, compressed shard', async () => {
  await assert.rejects(listImages([join(root, 'nope')]), (e: Error) => e instanceof UserError && /nope: no such file or folder/.test(e.message));
  const empty = join(root, 'empty');
  mkdirSync(empty);
  await assert.rejects(listImages([empty]), (e: Error) => e instanceof UserError && /no images found.*the folder is empty/.test(e.message));
  const other = join(root, 'other');
  mkdirSync(other);
  writeFileSync(join(other, 'a.txt'), 'x');
  writeFileSync(join(other, 'b.csv'), 'x');
  await assert.rejects(listImages([other]), (e: Error) => e instanceof UserError && /no images found.*2 other files ignored/.test(e.message));
  writeFileSync(join(root, 'x.tar.gz'), 'x');
  await assert.rejects(listImages([join(root, 'x.tar.gz')]), /compressed tar shards cannot be read at random/);
  writeFileSync(join(root, 'blob.bin'), Buffer.from([0, 1, 2, 0]));
  await assert.rejects(listImages([join(root, 'blob.bin')]), /not an image.*text file listing paths/);
});

test('list files: paths relative to the list, comments, missing images kept (skipped later)', async () => {
  const d = join(root, 'list');
  await writeImage(join(d, 'i1.png'), 5);
  await writeImage(join(d, 'sub', 'i2.png'), 6);
  writeFileSync(join(d, 'list.txt'), '# my images\ni1.png\n\nsub/i2.png\nmissing.png\n');
  const l = await listImages([join(d, 'list.txt')]);
  assert.deepEqual(l.entries.map((e) => e.locator), [join(d, 'i1.png'), join(d, 'sub', 'i2.png'), join(d, 'missing.png')]);
  writeFileSync(join(d, 'empty.txt'), '# nothing\n');
  await assert.rejects(listImages([join(d, 'empty.txt')]), /the list is empty/);
});

test('tar shards: image members in archive order, long names, other members ignored, random access', async () => {
  const d = join(root, 'tars');
  mkdirSync(d);
  const a = await encodeImage(7);
  const b = await encodeImage(8);
  const long = `${'deep/'.repeat(30)}sample.png`;
  await writeTar(join(d, 'shard-000.tar'), [
    ['k1.png', a],
    ['k1.cls', Buffer.from('3')],
    [long, b],
  ]);
  await writeTar(join(d, 'shard-001.tar'), [['k2.png', b]]);
  const idx = indexTar(join(d, 'shard-000.tar'));
  assert.equal(idx.members.length, 3);
  assert.equal(idx.members[2].name, long);
  const l = await listImages([join(d, 'shard-{000..001}.tar')]);
  assert.deepEqual(l.entries.map((e) => e.member), ['k1.png', long, 'k2.png']);
  assert.equal(l.entries[1].locator, `${join(d, 'shard-000.tar')}#${long}`);
  const r = new ImageReader();
  assert.deepEqual(Buffer.from((await r.read(l.entries[1])).bytes), b);
  assert.deepEqual(Buffer.from((await r.read(l.entries[0])).bytes), a);
  r.close();
  // A corrupt header stops the index with a warning, keeping what came before.
  const buf = readFileSync(join(d, 'shard-000.tar'));
  const bad = Buffer.from(buf);
  bad[1024 + 512 + 10] ^= 0xff; // inside the second member's header
  writeFileSync(join(d, 'bad.tar'), bad);
  const lb = await listImages([join(d, 'bad.tar')]);
  assert.equal(lb.entries.length, 1);
  assert.match(lb.warnings[0], /corrupt tar header/);
});

test('parquet: Hugging Face image struct, several row groups, null cells; no image column is a clear error', async () => {
  const d = join(root, 'pq');
  mkdirSync(d);
  const imgs = await Promise.all([10, 11, 12, 13, 14].map((s) => encodeImage(s)));
  writeImageParquet(join(d, 'val-0.parquet'), imgs.map((bytes, i) => ({ bytes, name: `n${i}.png` })), { rowGroupSize: 2, nullRows: [3] });
  const l = await listImages([join(d, 'val-0.parquet')]);
  assert.equal(l.entries.length, 5);
  assert.equal(l.entries[4].locator, `${join(d, 'val-0.parquet')}#4`);
  const r = new ImageReader();
  for (const i of [4, 0, 1, 2]) {
    const got = await r.read(l.entries[i]);
    assert.deepEqual(Buffer.from(got.bytes), imgs[i]);
    assert.equal(got.name, `n${i}.png`);
  }
  await assert.rejects(r.read(l.entries[3]), /empty/);
  r.close();
  writeParquet(join(d, 'text.parquet'), {
    rows: 2,
    fields: [
      { name: 'caption', leaf: { path: ['caption'], type: 'BYTE_ARRAY', utf8: true, values: ['a', 'b'] } },
      { name: 'label', leaf: { path: ['label'], type: 'INT64', values: [1n, 2n] } },
    ],
  });
  await assert.rejects(listImages([join(d, 'text.parquet')]), (e: Error) => e instanceof UserError && /no image column.*columns: caption \(utf8\), label \(int64\)/.test(e.message));
  await assert.rejects(listImages([join(d, 'val-0.parquet')], { imageColumn: 'label' }), /column 'label' \(int64\) does not hold image bytes/);
  writeFileSync(join(d, 'junk.parquet'), 'not parquet at all');
  await assert.rejects(listImages([join(d, 'junk.parquet')]), /not a readable Parquet file/);
});

test('shards: parse, env indices, contiguous ranges covering every id once, {shard} in paths', () => {
  assert.deepEqual(parseShard(undefined), { index: 0, count: 1 });
  assert.deepEqual(parseShard('2/5'), { index: 2, count: 5 });
  assert.deepEqual(parseShard('auto/4', { SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_MIN: '1' }), { index: 2, count: 4 });
  assert.deepEqual(parseShard('4', { JOB_COMPLETION_INDEX: '3' }), { index: 3, count: 4 });
  assert.throws(() => parseShard('auto/4', {}), /no shard index/);
  assert.throws(() => parseShard('5/5'), /outside 0..4/);
  assert.throws(() => parseShard('a/b'), /expected i\/N/);
  for (const [n, N] of [
    [10, 3],
    [2, 5],
    [1000, 7],
  ]) {
    let at = 0;
    for (let i = 0; i < N; i++) {
      const [a, b] = shardRange({ index: i, count: N }, n);
      assert.equal(a, at);
      at = b;
    }
    assert.equal(at, n);
  }
  assert.equal(shardPath('runs/s/shard-{shard}', { index: 3, count: 12 }), 'runs/s/shard-03');
});

test('top-k lists keep the k best under (score desc, id asc), in any order of offering', () => {
  const k = 4;
  let x = 12345;
  const rnd = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const items = Array.from({ length: 60 }, (_, id) => ({ id, score: Math.round(rnd() * 8) / 2 })); // many ties
  const expected = [...items].sort((a, b) => (ranksBefore(a.score, a.id, b.score, b.id) ? -1 : 1)).slice(0, k);
  for (const order of [items, [...items].reverse(), [...items].sort(() => rnd() - 0.5)]) {
    const t = new TopKLists(2, k);
    for (const it of order) t.offer(1, it.score, it.id, 1, 2, 3, 4, 5, 6, 7, 8);
    assert.deepEqual(t.entries(1).map((e) => [e.score, e.id]), expected.map((e) => [e.score, e.id]));
    assert.equal(t.count[0], 0);
    assert.deepEqual(t.takeDirty(0), [1]);
    const back = decodeEntries(encodeEntries(t.entries(1)));
    assert.deepEqual(back, t.entries(1));
  }
  const t = new TopKLists(1, 2);
  assert.equal(t.offer(0, NaN, 1, 0, 0, 0, 0, 0, 0, 0, 0), false);
});

test('anisotropy sums are exact and order-independent', () => {
  const d = 5;
  const vs = Array.from({ length: 30 }, (_, i) => Array.from({ length: d }, (_, j) => Math.sin(i * 3.1 + j * 1.7) + 0.4));
  const a = new CentreSums(1, d);
  for (const v of vs) a.add(0, v);
  a.flush();
  const b = new CentreSums(1, d);
  for (const v of [...vs].reverse()) {
    b.add(0, v);
    b.flush();
  }
  assert.deepEqual(a.sums, b.sums);
  assert.equal(a.value(0), b.value(0));
  // Against the pairwise definition.
  const unit = vs.map((v) => {
    const n = Math.hypot(...v);
    return v.map((x) => x / n);
  });
  let s = 0;
  let pairs = 0;
  for (let i = 0; i < unit.length; i++)
    for (let j = 0; j < unit.length; j++)
      if (i !== j) {
        s += unit[i].reduce((acc, x, c) => acc + x * unit[j][c], 0);
        pairs++;
      }
  assert.ok(Math.abs(a.value(0)! - s / pairs) < 1e-8);
});
