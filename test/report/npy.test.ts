import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NpyStreamWriter, decodeNpy, encodeNpy, npyHeader, readNpy, readNpyHeader, writeNpy, type NpyDtype } from '../../src/io/npy.js';
import { UserError } from '../../src/errors.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'qkscope-npy-'));

test('header of a float32 [2, 3] array is byte-identical to numpy.save', () => {
  // numpy 2.x: np.save(f, np.zeros((2, 3), np.float32)); the dict, 21 − len("2") = 20 growth
  // spaces, then padding to 128 bytes minus the final newline.
  const dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  const expected = Buffer.concat([
    Buffer.from([0x93]),
    Buffer.from('NUMPY', 'latin1'),
    Buffer.from([0x01, 0x00, 0x76, 0x00]), // version 1.0, header length 118
    Buffer.from(dict + ' '.repeat(128 - 10 - dict.length - 1) + '\n', 'latin1'),
  ]);
  assert.equal(expected.length, 128);
  const h = npyHeader('<f4', [2, 3]);
  assert.deepEqual(h, expected);
  const whole = encodeNpy('<f4', [2, 3], [1, 2, 3, 4, 5, 6]);
  assert.equal(whole.length, 128 + 24);
  assert.equal(whole.readFloatLE(128 + 5 * 4), 6);
});

test('header format: 0-d and 1-d shapes, other dtypes, 64-byte alignment', () => {
  const cases: [NpyDtype, number[], string][] = [
    ['<f8', [], "{'descr': '<f8', 'fortran_order': False, 'shape': (), }"],
    ['<i4', [5], "{'descr': '<i4', 'fortran_order': False, 'shape': (5,), }" + ' '.repeat(20)],
    ['|u1', [1280, 80], "{'descr': '|u1', 'fortran_order': False, 'shape': (1280, 80), }" + ' '.repeat(17)],
    ['<i8', [32, 16, 1280, 80], "{'descr': '<i8', 'fortran_order': False, 'shape': (32, 16, 1280, 80), }" + ' '.repeat(19)],
  ];
  for (const [dtype, shape, dict] of cases) {
    const h = npyHeader(dtype, shape);
    assert.equal(h.length % 64, 0, `${dtype} ${shape}`);
    assert.equal(h.readUInt16LE(8), h.length - 10);
    const text = h.subarray(10).toString('latin1');
    assert.ok(text.startsWith(dict), text);
    assert.match(text.slice(dict.length), /^ *\n$/);
  }
});

test('header that fills 64 bytes exactly still gets 64 bytes of padding, as numpy does', () => {
  // Find a shape whose dict length makes 10 + hlen ≡ 0 (mod 64), then check the padding rule.
  for (let ones = 1; ones < 30; ones++) {
    for (let digits = 1; digits <= 15; digits++) {
      const shape = [...Array.from({ length: ones }, () => 1), 10 ** (digits - 1)];
      const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}), }` + ' '.repeat(20);
      if ((10 + dict.length + 1) % 64 === 0) {
        const h = npyHeader('<f4', shape);
        assert.equal(h.length, 10 + dict.length + 1 + 64);
        return;
      }
    }
  }
  assert.fail('no shape hit the boundary');
});

test('round trips every dtype, including 0-d and empty arrays', () => {
  const dir = tmp();
  try {
    const cases: [NpyDtype, number[], ArrayLike<number> | BigInt64Array][] = [
      ['<f4', [2, 3], new Float32Array([1.5, -2, 3e-8, Infinity, -0, 6])],
      ['<f8', [3], [Math.PI, -1e300, NaN]],
      ['<i4', [2, 2], [0, -1, 2147483647, -2147483648]],
      ['<i8', [2], new BigInt64Array([-(1n << 62n), 9007199254740993n])],
      ['<i8', [3], [1, -2, 2 ** 53 - 1]],
      ['|u1', [4], new Uint8Array([0, 1, 254, 255])],
      ['<f8', [], [42]],
      ['<f4', [0, 5], []],
    ];
    cases.forEach(([dtype, shape, data], i) => {
      const p = join(dir, `a${i}.npy`);
      writeNpy(p, dtype, shape, data);
      const r = readNpy(p);
      assert.equal(r.dtype, dtype);
      assert.deepEqual(r.shape, shape);
      const want = dtype === '<i8' ? Array.from(data as ArrayLike<number | bigint>, (v) => BigInt(v)) : Array.from(data as ArrayLike<number>, (v) => (dtype === '<f4' ? Math.fround(v) : v));
      assert.deepEqual(Array.from(r.data as ArrayLike<number | bigint>), want);
      assert.equal(readNpyHeader(p).dataOffset % 64, 0);
    });
    // int64 as numbers
    const p = join(dir, 'i8.npy');
    writeNpy(p, '<i8', [2], [5, -7]);
    const r = readNpy(p, { int64: 'number' });
    assert.ok(r.data instanceof Float64Array);
    assert.deepEqual(Array.from(r.data), [5, -7]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writers reject values that do not fit integer dtypes and wrong element counts', () => {
  assert.throws(() => encodeNpy('<i4', [1], [1.5]), /not an int32/);
  assert.throws(() => encodeNpy('|u1', [1], [256]), /not a uint8/);
  assert.throws(() => encodeNpy('<i8', [1], [2 ** 60]), /safe integer/);
  assert.throws(() => encodeNpy('<f4', [2, 2], [1, 2, 3]), /needs 4 elements/);
  assert.throws(() => npyHeader('<f4', [-1]), /non-negative/);
  assert.throws(() => npyHeader('<f2' as NpyDtype, [1]), /unsupported dtype/);
});

test('format 2.0 header when the header exceeds 65535 bytes', () => {
  const shape = Array.from({ length: 22000 }, () => 1);
  const h = npyHeader('<f4', shape);
  assert.equal(h[6], 2);
  assert.equal(h[7], 0);
  assert.equal(h.length % 64, 0);
  assert.equal(h.readUInt32LE(8), h.length - 12);
  const buf = encodeNpy('<f4', shape, [3.5]);
  const r = decodeNpy(buf, 'v2.npy');
  assert.equal(r.shape.length, 22000);
  assert.deepEqual(Array.from(r.data as Float32Array), [3.5]);
});

test('stream writer: appended chunks, positioned writes, exact count checked at close', () => {
  const dir = tmp();
  try {
    const shape = [4, 3, 5];
    const n = 60;
    const all = Float64Array.from({ length: n }, (_, i) => i * 0.25 - 3);
    // Appended in uneven chunks of mixed kinds.
    const p1 = join(dir, 'append.npy');
    const w = NpyStreamWriter.create(p1, '<f4', shape);
    w.append(all.subarray(0, 7));
    w.append(Array.from(all.subarray(7, 31)));
    w.append(new Float32Array(all.subarray(31)));
    assert.equal(w.written, n);
    w.close();
    assert.deepEqual(readFileSync(p1), encodeNpy('<f4', shape, all));
    // Positioned writes, out of order.
    const p2 = join(dir, 'pos.npy');
    const w2 = NpyStreamWriter.create(p2, '<f8', shape);
    w2.writeAt(45, all.subarray(45));
    w2.writeAt(0, all.subarray(0, 15));
    w2.writeAt(15, all.subarray(15, 45));
    w2.close();
    assert.deepEqual(readFileSync(p2), encodeNpy('<f8', shape, all));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('stream writer: incomplete, overlapping or overflowing writes fail', () => {
  const dir = tmp();
  try {
    const p = join(dir, 'short.npy');
    const w = NpyStreamWriter.create(p, '<f4', [2, 3]);
    w.append([1, 2, 3, 4, 5]);
    assert.throws(() => w.close(), /only 5 of 6 elements.*first missing element: 5/);
    assert.equal(existsSync(p), false, 'incomplete file removed');

    const w2 = NpyStreamWriter.create(p, '<f4', [2, 3]);
    w2.writeAt(0, [1, 2, 3]);
    assert.throws(() => w2.writeAt(2, [9, 9]), /elements 2\.\.2 written twice/);
    assert.throws(() => w2.writeAt(5, [1, 2]), /exceeds the 6 elements/);
    w2.abort();
    assert.equal(existsSync(p), false);

    const w3 = NpyStreamWriter.create(p, '<i4', [3]);
    w3.writeAt(2, [3]);
    assert.throws(() => w3.close(), /first missing element: 0/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('stream writer handles a large array without holding it (64 MiB of float32 in 1 MiB chunks)', () => {
  const dir = tmp();
  try {
    const shape = [4, 16, 1280, 205]; // 16.8 M elements
    const total = shape.reduce((a, b) => a * b, 1);
    const p = join(dir, 'big.npy');
    const w = NpyStreamWriter.create(p, '<f4', shape);
    const chunk = new Float32Array(1 << 18);
    for (let off = 0; off < total; off += chunk.length) {
      const len = Math.min(chunk.length, total - off);
      for (let i = 0; i < len; i++) chunk[i] = (off + i) % 1000;
      w.append(chunk.subarray(0, len));
    }
    w.close();
    const h = readNpyHeader(p);
    assert.deepEqual(h.shape, shape);
    assert.equal(statSync(p).size, h.dataOffset + total * 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('reader: clear errors naming the file for malformed, Fortran-order and unsupported files', () => {
  const dir = tmp();
  try {
    const p = (name: string) => join(dir, name);
    const withDict = (dict: string, data = Buffer.alloc(0)) => {
      let body = dict + ' ';
      while ((10 + body.length + 1) % 64) body += ' ';
      const b = Buffer.alloc(10);
      Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(b);
      b.writeUInt16LE(body.length + 1, 8);
      return Buffer.concat([b, Buffer.from(body + '\n', 'latin1'), data]);
    };
    writeFileSync(p('junk.npy'), 'hello world, not numpy');
    writeFileSync(p('fortran.npy'), withDict("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", Buffer.alloc(16)));
    writeFileSync(p('f2.npy'), withDict("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", Buffer.alloc(4)));
    writeFileSync(p('be.npy'), withDict("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", Buffer.alloc(8)));
    writeFileSync(p('short.npy'), withDict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", Buffer.alloc(12)));
    writeFileSync(p('badhdr.npy'), withDict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2) "));
    writeFileSync(p('struct.npy'), withDict("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", Buffer.alloc(4)));
    const expectErr = (name: string, re: RegExp) =>
      assert.throws(
        () => readNpy(p(name)),
        (e: unknown) => e instanceof UserError && e.message.includes(p(name)) && re.test(e.message),
        name,
      );
    expectErr('junk.npy', /not a valid \.npy file.*magic/);
    expectErr('fortran.npy', /Fortran-order/);
    expectErr('f2.npy', /unsupported dtype '<f2'/);
    expectErr('be.npy', /unsupported dtype '>f4'/);
    expectErr('short.npy', /needs 16 data bytes, the file has 12/);
    expectErr('badhdr.npy', /not a valid \.npy file.*header/);
    expectErr('struct.npy', /unsupported dtype/);
    expectErr('missing.npy', /cannot open/);
    // The well-formed hand-built file with the padding rule applied reads.
    writeFileSync(p('ok.npy'), withDict("{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", Buffer.from([7, 0, 0, 0])));
    assert.deepEqual(Array.from(readNpy(p('ok.npy')).data as Int32Array), [7]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
