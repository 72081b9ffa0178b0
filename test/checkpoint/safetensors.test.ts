import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { decode, encode } from '../../src/checkpoint/dtype.js';
import type { DType } from '../../src/checkpoint/types.js';
import { ramp, rejectsUser, tempDir } from './tmp.js';

const dir = tempDir('st');

/** Builds a safetensors file by hand, so headers can lie. */
function rawFile(name: string, header: unknown, data: Uint8Array, headerText?: string): string {
  const json = Buffer.from(headerText ?? JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([len, json, data]));
  return p;
}

test('round trip for every dtype, values exact after the dtype rounding', async () => {
  const vals = [0, 1, -2, 0.5, 3.25, -0.125, 65504, 1e-3];
  const p = join(dir, 'all.safetensors');
  const dtypes: DType[] = ['F32', 'F16', 'BF16', 'F64'];
  writeSafetensors(p, Object.fromEntries(dtypes.map((d) => [`t.${d}`, { dtype: d, shape: [2, 4], data: vals }])), { format: 'pt' });
  const f = await SafetensorsFile.open(p);
  try {
    assert.deepEqual(f.names().sort(), dtypes.map((d) => `t.${d}`).sort());
    assert.deepEqual(f.metadata, { format: 'pt' });
    for (const d of dtypes) {
      assert.deepEqual(f.info(`t.${d}`), { name: `t.${d}`, dtype: d, shape: [2, 4] });
      const got = await f.read(`t.${d}`);
      assert.ok(d === 'F64' ? got instanceof Float64Array : got instanceof Float32Array, d);
      // The first six values are exact in every dtype; the rest round as the encoder rounds them.
      for (let i = 0; i < 6; i++) assert.equal(got[i], vals[i], `${d}[${i}]`);
      const rounded = decode(encode(vals, d), d);
      assert.deepEqual(Array.from(got), Array.from(rounded), d);
      assert.ok(Math.abs(got[7] - 1e-3) < 1e-5, `${d} 1e-3`);
    }
  } finally {
    await f.close();
  }
});

test('a row range reads only those rows', async () => {
  const p = join(dir, 'rows.safetensors');
  writeSafetensors(p, { w: { dtype: 'F32', shape: [6, 3], data: ramp(18) }, h: { dtype: 'F16', shape: [4, 2], data: ramp(8) } });
  const f = await SafetensorsFile.open(p);
  try {
    assert.deepEqual(Array.from(await f.read('w', 2, 4)), ramp(18).slice(6, 12));
    assert.equal(f.bytesRead, 2 * 3 * 4, 'two rows of three float32');
    assert.deepEqual(Array.from(await f.read('h', 3)), ramp(8).slice(6));
    assert.equal(f.bytesRead, 24 + 2 * 2);
    assert.deepEqual(Array.from(await f.read('w', 1, 1)), []);
    await assert.rejects(f.read('w', 4, 7), /row range/);
  } finally {
    await f.close();
  }
});

test('a scalar tensor reads as one value', async () => {
  const p = join(dir, 'scalar.safetensors');
  writeSafetensors(p, { s: { dtype: 'F32', shape: [], data: [2.5] } });
  const f = await SafetensorsFile.open(p);
  assert.deepEqual(Array.from(await f.read('s')), [2.5]);
  await f.close();
});

test('a truncated file is refused at open, naming the file', async () => {
  const good = join(dir, 'good.safetensors');
  writeSafetensors(good, { w: { dtype: 'F32', shape: [8, 8], data: ramp(64) } });
  const bytes = readFileSync(good);
  const cut = join(dir, 'cut.safetensors');
  writeFileSync(cut, bytes.subarray(0, bytes.length - 10));
  await rejectsUser(() => SafetensorsFile.open(cut), cut, /truncated/, /re-download/);
  const tiny = join(dir, 'tiny.safetensors');
  writeFileSync(tiny, bytes.subarray(0, 5));
  await rejectsUser(() => SafetensorsFile.open(tiny), tiny, /only 5 bytes/);
});

test('a header length that lies is refused', async () => {
  const p = join(dir, 'lies.safetensors');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(10_000n);
  writeFileSync(p, Buffer.concat([len, Buffer.from('{"a":1}')]));
  await rejectsUser(() => SafetensorsFile.open(p), p, /header length 10000 does not fit a 15-byte file/);
});

test('an entry whose byte size does not match its shape is refused', async () => {
  const p = rawFile('mismatch.safetensors', { w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } }, new Uint8Array(24));
  await rejectsUser(() => SafetensorsFile.open(p), p, /tensor w has 20 bytes but shape \[2,3\] F32 needs 24/);
  const q = rawFile('backwards.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, new Uint8Array(8));
  await rejectsUser(() => SafetensorsFile.open(q), q, /invalid data_offsets/);
});

test('a header that is not JSON is refused', async () => {
  const p = rawFile('nojson.safetensors', null, new Uint8Array(0), '{"w": {"dtype": "F32", oops');
  await rejectsUser(() => SafetensorsFile.open(p), p, /header is not JSON/, /re-download or re-export/);
  const q = rawFile('array.safetensors', null, new Uint8Array(0), '[1,2,3]');
  await rejectsUser(() => SafetensorsFile.open(q), q, /not a JSON object/);
});

test('a missing tensor, an unsupported dtype and a missing file are UserErrors naming the file', async () => {
  const p = rawFile('ints.safetensors', { ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, new Uint8Array(16));
  const f = await SafetensorsFile.open(p);
  try {
    assert.equal(f.info('ids')?.dtype, 'I64');
    await rejectsUser(() => f.read('nope'), p, /tensor nope is missing/);
    await rejectsUser(() => f.read('ids'), p, /dtype I64; only F32, F16, BF16 and F64/);
  } finally {
    await f.close();
  }
  const gone = join(dir, 'gone.safetensors');
  await rejectsUser(() => SafetensorsFile.open(gone), gone, /ENOENT/, /check the path/);
});

test('a Git LFS pointer is recognised', async () => {
  const p = join(dir, 'lfs.safetensors');
  writeFileSync(p, 'version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n');
  await rejectsUser(() => SafetensorsFile.open(p), p, /Git LFS pointer/, /git lfs pull/);
});

test('openSync reads the same header', () => {
  const p = join(dir, 'sync.safetensors');
  writeSafetensors(p, { a: { dtype: 'BF16', shape: [3], data: [1, 2, 3] } });
  const f = SafetensorsFile.openSync(p);
  assert.deepEqual(f.info('a'), { name: 'a', dtype: 'BF16', shape: [3] });
  return f.close();
});

test('data offsets must tile the data section: overlaps, gaps, trailing bytes and strays are refused', async () => {
  const f32 = (b: number, e: number, shape = [2]) => ({ dtype: 'F32', shape, data_offsets: [b, e] });
  // The red team's file: K's offsets point at Q's bytes (K would read as Q, cosine 1.000).
  const overlap = rawFile('overlap.safetensors', { q: f32(0, 8), k: f32(0, 8) }, new Uint8Array(8));
  await rejectsUser(() => SafetensorsFile.open(overlap), overlap, /tensor (q|k) overlaps the previous tensor's bytes/, /re-download or re-export/);
  const partial = rawFile('partial.safetensors', { q: f32(0, 16, [4]), k: f32(8, 16) }, new Uint8Array(16));
  await rejectsUser(() => SafetensorsFile.open(partial), partial, /tensor k overlaps/);
  const gap = rawFile('gap.safetensors', { q: f32(0, 8), k: f32(12, 20) }, new Uint8Array(20));
  await rejectsUser(() => SafetensorsFile.open(gap), gap, /gap: bytes 8\.\.12 belong to no tensor/);
  const late = rawFile('late.safetensors', { q: f32(4, 12) }, new Uint8Array(12));
  await rejectsUser(() => SafetensorsFile.open(late), late, /gap: bytes 0\.\.4/);
  const trailing = rawFile('trailing.safetensors', { q: f32(0, 8) }, new Uint8Array(12));
  await rejectsUser(() => SafetensorsFile.open(trailing), trailing, /cover 8 bytes of data but the file holds 12/);
  const beyond = rawFile('beyond.safetensors', { q: f32(0, 8), k: f32(8, 16) }, new Uint8Array(8));
  await rejectsUser(() => SafetensorsFile.open(beyond), beyond, /tensor k ends at byte \d+ but the file has \d+ bytes/);
  const huge = rawFile('huge.safetensors', { q: { dtype: 'F32', shape: [2 ** 40, 2 ** 20], data_offsets: [0, 8] } }, new Uint8Array(8));
  await rejectsUser(() => SafetensorsFile.open(huge), huge, /tensor q has shape/);
});

test('unknown dtypes and malformed metadata are refused; every format dtype (and empty tensors) is listed', async () => {
  const odd = rawFile('odd.safetensors', { q: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, new Uint8Array(16));
  await rejectsUser(() => SafetensorsFile.open(odd), odd, /tensor q has unknown dtype "F128"/);
  const meta = rawFile('meta.safetensors', { __metadata__: { format: 1 } }, new Uint8Array(0));
  await rejectsUser(() => SafetensorsFile.open(meta), meta, /__metadata__ is not a map of strings/);
  const fine = rawFile('fine.safetensors', {
    a: { dtype: 'F4', shape: [4], data_offsets: [0, 2] },
    e: { dtype: 'F32', shape: [0, 3], data_offsets: [2, 2] },
    b: { dtype: 'I64', shape: [1], data_offsets: [2, 10] },
  }, new Uint8Array(10));
  const f = await SafetensorsFile.open(fine);
  assert.deepEqual(f.names().sort(), ['a', 'b', 'e']);
  assert.deepEqual(Array.from(await f.read('e')), []);
  await rejectsUser(() => f.read('a'), /dtype F4; only F32, F16, BF16 and F64/);
  await f.close();
});
