import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CsvWriter, csvField, csvRecord, toCsv } from '../../src/io/csv.js';

test('fields are quoted only when needed (RFC 4180)', () => {
  assert.equal(csvField('plain'), 'plain');
  assert.equal(csvField('a,b'), '"a,b"');
  assert.equal(csvField('say "hi"'), '"say ""hi"""');
  assert.equal(csvField('two\nlines'), '"two\nlines"');
  assert.equal(csvField('cr\r'), '"cr\r"');
  assert.equal(csvField(' padded'), '" padded"');
  assert.equal(csvField(''), '');
  assert.equal(csvField('σ-weighted'), 'σ-weighted');
});

test('values: numbers, non-finite, bigint, booleans, empty', () => {
  assert.equal(csvRecord([1, -0.25, 1e-12, NaN, Infinity, -Infinity, 12n, true, null, undefined]), '1,-0.25,1e-12,NaN,inf,-inf,12,true,,');
  assert.equal(csvField(0.1 + 0.2), '0.30000000000000004'); // round-trips exactly
});

test('toCsv: header, CRLF by default, LF on request', () => {
  const rows = [
    [0, 1, 'google/vit-base-patch16-224', 0.5],
    [0, 2, 'model, with comma', -0.125],
  ];
  assert.equal(
    toCsv(rows, { header: ['layer', 'head', 'model', 'C'] }),
    'layer,head,model,C\r\n0,1,google/vit-base-patch16-224,0.5\r\n0,2,"model, with comma",-0.125\r\n',
  );
  assert.equal(toCsv([[1, 2]], { eol: '\n' }), '1,2\n');
  assert.equal(toCsv([]), '');
});

test('CsvWriter streams records and checks the field count', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qkscope-csv-'));
  try {
    const p = join(dir, 't.csv');
    const w = new CsvWriter(p, { header: ['a', 'b'] });
    for (let i = 0; i < 3; i++) w.row([i, `x"${i}`]);
    assert.throws(() => w.row([1]), /1 fields, expected 2/);
    w.close();
    assert.equal(readFileSync(p, 'utf8'), 'a,b\r\n0,"x""0"\r\n1,"x""1"\r\n2,"x""2"\r\n');
    assert.throws(() => w.row([1, 2]), /closed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
