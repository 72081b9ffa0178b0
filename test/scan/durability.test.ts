/**
 * Scans survive concurrency and damage: one writer per run directory (a second is refused at
 * once, naming the holder), stale locks of dead processes are taken over, `--resume` verifies
 * the database and refuses a damaged one with what is wrong, and every skipped image carries
 * its own reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, writeSync, closeSync, statSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { dumpContent, writeImage } from './helpers.js';
import { CLI } from '../helpers/paths.js';
import { LOCK_NAME, lockRunDir } from '../../src/store/run-lock.js';
import { skipReason } from '../../src/images/source.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-scan-durable-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const model = writeModel(join(root, 'model'), 'hf-vit', makeLayoutWeights('hf-vit', { d: 24, heads: 2, layers: 2, patch: 4, image: 16, seed: 5 })).path;
const N = 16;
const imgDir = join(root, 'imgs');
const ready = (async () => {
  for (let i = 0; i < N; i++) await writeImage(join(imgDir, `img${String(i).padStart(2, '0')}.png`), 900 + i, 14 + (i % 3) * 5, 16 + (i % 4) * 3);
})();

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string> = {}): { child: ReturnType<typeof spawn>; done: Promise<Ran> } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b) => (stdout += b));
  child.stderr!.on('data', (b) => (stderr += b));
  const done = new Promise<Ran>((res) => child.on('exit', (code) => res({ code, stdout, stderr })));
  return { child, done };
}

function assertOneLine(r: Ran, pattern: RegExp) {
  assert.equal(r.code, 2, `exit ${r.code}\n${r.stderr}`);
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('scan: ') && !l.startsWith('svd: '));
  assert.equal(lines.length, 1, `one line expected:\n${r.stderr}`);
  assert.match(lines[0], /^qkscope: /);
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
  assert.match(lines[0], pattern);
}

let reference: Promise<string> | null = null;
function single(): Promise<string> {
  reference ??= (async () => {
    await ready;
    const out = join(root, 'ref');
    const r = await cli(['scan', model, imgDir, '--out', out, '--top', '3', '--batch', '3']).done;
    assert.equal(r.code, 0, r.stderr);
    return out;
  })();
  return reference;
}

function sameContent(a: string, b: string) {
  const x = dumpContent(join(a, 'run.db'));
  const y = dumpContent(join(b, 'run.db'));
  for (const k of Object.keys(x)) assert.deepEqual(y[k], x[k], `table ${k} differs between ${a} and ${b}`);
}

test('a second writer is refused at once, naming the holder; the first finishes intact', async () => {
  const ref = await single();
  const out = join(root, 'busy');
  const first = cli(['scan', model, imgDir, '--out', out, '--top', '3', '--batch', '1', '--progress-every', '1'], { QKSCOPE_SCAN_BATCH_DELAY_MS: '600' });
  // Wait until the first has committed a batch.
  await new Promise<void>((res) => {
    const t = setInterval(() => {
      if (existsSync(join(out, 'run.db'))) {
        clearInterval(t);
        res();
      }
    }, 20);
  });
  const t0 = performance.now();
  const second = await cli(['scan', model, imgDir, '--out', out, '--top', '3', '--resume']).done;
  assertOneLine(second, new RegExp(`another qkscope writer holds this run directory: process ${first.child.pid} on ${hostname().replace(/[.]/g, '\\.')} \\(scan, started \\d{4}-`));
  assert.ok(performance.now() - t0 < 15000);
  const merge = await cli(['merge', ref, '--out', out]).done;
  assertOneLine(merge, /already holds a run\.db|another qkscope writer/);
  const r1 = await first.done;
  assert.equal(r1.code, 0, r1.stderr);
  sameContent(ref, out);
  assert.ok(!existsSync(join(out, LOCK_NAME)), 'the lock is released at the end');
});

test('two scans started at the same moment: one runs, the other is refused with one line', async () => {
  const ref = await single();
  const out = join(root, 'race');
  const a = cli(['scan', model, imgDir, '--out', out, '--top', '3', '--batch', '4']);
  const b = cli(['scan', model, imgDir, '--out', out, '--top', '3', '--batch', '4']);
  const [ra, rb] = await Promise.all([a.done, b.done]);
  const ok = [ra, rb].filter((r) => r.code === 0);
  const refused = [ra, rb].filter((r) => r.code !== 0);
  assert.equal(ok.length, 1, `${ra.stderr}\n---\n${rb.stderr}`);
  assertOneLine(refused[0], /another qkscope writer holds this run directory|already holds a scan/);
  sameContent(ref, out);
});

test('a stale lock of a dead process is taken over; a live one in this process is re-entrant', async () => {
  const ref = await single();
  const out = join(root, 'stale');
  mkdirSync(out, { recursive: true });
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  const pid = Number(dead.stdout.toString());
  writeFileSync(join(out, LOCK_NAME), JSON.stringify({ pid, host: hostname(), started: '2020-01-01T00:00:00Z', pstart: null, command: 'scan' }));
  const r = await cli(['scan', model, imgDir, '--out', out, '--top', '3', '--batch', '5']).done;
  assert.equal(r.code, 0, r.stderr);
  sameContent(ref, out);
  // Re-entrant within one process; released when every holder has released.
  const lockDir = join(root, 'reentrant');
  const r1 = lockRunDir(lockDir, 'test');
  const r2 = lockRunDir(lockDir, 'test');
  r1();
  assert.ok(existsSync(join(lockDir, LOCK_NAME)));
  r2();
  assert.ok(!existsSync(join(lockDir, LOCK_NAME)));
});

/** A scan stopped (SIGINT) after a few batches: a database to damage. */
async function partialScan(name: string): Promise<string> {
  await ready;
  const out = join(root, name);
  const c = cli(['scan', model, imgDir, '--out', out, '--top', '3', '--batch', '2', '--progress-every', '1'], { QKSCOPE_SCAN_BATCH_DELAY_MS: '60' });
  let stderr = '';
  c.child.stderr!.on('data', (b) => {
    stderr += b;
    if (/scan: 4\//.test(stderr)) c.child.kill('SIGINT');
  });
  const r = await c.done;
  assert.equal(r.code, 130, r.stderr);
  return out;
}

test('--resume verifies the database and refuses a damaged one, saying what is wrong', async () => {
  const cases: [string, (db: Database.Database, path: string) => void, RegExp][] = [
    ['progress', (db) => db.exec('UPDATE progress SET done = done + 3'), /images marked done, but the progress row says/],
    ['heap', (db) => db.exec("UPDATE heap_state SET entries = x'0102' WHERE (layer, head, mode, sign) IN (SELECT layer, head, mode, sign FROM heap_state LIMIT 2)"), /top-k list\(s\) empty, malformed/],
    ['stranger', (db) => db.exec("UPDATE images SET status = 'pending' WHERE id = (SELECT MIN(id) FROM images WHERE status = 'done')"), /top-k entries name images that are not marked done|images marked done/],
    ['reason', (db) => db.exec("UPDATE images SET status = 'skipped', reason = NULL WHERE id = (SELECT MAX(id) FROM images WHERE status = 'pending'); UPDATE progress SET skipped = skipped + 1"), /skipped image\(s\) without a reason/],
    ['extra-row', (db) => db.exec("INSERT INTO images (id, path, source, container) VALUES (9999, 'x', 'file', 'x')"), /image rows, but the progress row says/],
  ];
  for (const [name, damage, want] of cases) {
    const out = await partialScan(`damaged-${name}`);
    const db = new Database(join(out, 'run.db'));
    damage(db, join(out, 'run.db'));
    db.close();
    const r = await cli(['scan', model, imgDir, '--out', out, '--top', '3', '--resume']).done;
    assertOneLine(r, new RegExp(`cannot resume, the run database is damaged: .*${want.source}`));
  }
  // Bytes overwritten in the middle of the file: SQLite's own check (or its open) fails.
  const out = await partialScan('damaged-bytes');
  const p = join(out, 'run.db');
  const size = statSync(p).size;
  const fd = openSync(p, 'r+');
  // Garbage over the page headers of every other page after the first.
  for (let at = 4096; at < size; at += 8192) writeSync(fd, Buffer.alloc(64, 0xa5), 0, 64, at);
  closeSync(fd);
  const r = await cli(['scan', model, imgDir, '--out', out, '--top', '3', '--resume']).done;
  assertOneLine(r, /damaged|integrity|malformed/);
});

test('every skipped image carries its own reason (8 unusable among 20, three runs)', async () => {
  await ready;
  const dir = join(root, 'mixed');
  mkdirSync(dir, { recursive: true });
  const want = new Map<string, RegExp>();
  for (let i = 0; i < 12; i++) await writeImage(join(dir, `ok${String(i).padStart(2, '0')}.png`), 70 + i, 16, 16);
  const bad: [string, string | Buffer, RegExp][] = [
    ['b0-empty.png', Buffer.alloc(0), /empty file/],
    ['b1-text.jpg', 'this is not a jpeg at all', /cannot decode/],
    ['b2-truncated.png', readFileSync(join(dir, 'ok00.png')).subarray(0, 60), /cannot decode/],
    ['b3-vector.jpg', '<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"><rect width="10" height="10"/></svg>', /SVG file is not a photo/],
    ['b4-bomb.png', pngHeader(30000, 30000), /30000×30000 pixels exceeds the limit/],
    ['b5-gif-text.gif', 'GIF89a garbage', /cannot decode/],
    ['b6-zeros.webp', Buffer.alloc(300), /cannot decode/],
    ['b7-html.png', '<html><body>404</body></html>', /cannot decode/],
  ];
  for (const [name, data, re] of bad) {
    writeFileSync(join(dir, name), data);
    want.set(name, re);
  }
  for (let run = 0; run < 3; run++) {
    const out = join(root, `mixed-run${run}`);
    const r = await cli(['scan', model, dir, '--out', out, '--top', '2', '--batch', String(3 + run)]).done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /scanned 12 images, 8 skipped/);
    const db = new Database(join(out, 'run.db'), { readonly: true });
    const rows = db.prepare("SELECT path, reason FROM images WHERE status = 'skipped'").all() as { path: string; reason: string }[];
    db.close();
    assert.equal(rows.length, 8);
    for (const row of rows) {
      const name = row.path.split('/').pop()!;
      assert.ok(want.has(name), `${name} skipped but it is a good image: ${row.reason}`);
      assert.match(row.reason, want.get(name)!, `${name}: ${row.reason}`);
    }
  }
});

test('file-system errors name their cause as skip reasons (permission denied is not "unsupported format")', () => {
  const err = (code: string) => Object.assign(new Error(`${code}: x`), { code });
  assert.equal(skipReason(err('EACCES')), 'cannot read: permission denied (EACCES)');
  assert.equal(skipReason(err('EISDIR')), 'cannot read: is a directory, not an image (EISDIR)');
  assert.equal(skipReason(err('ENOENT')), 'cannot read: file not found (ENOENT)');
  assert.equal(skipReason(new TypeError('bug')), null, 'bugs are not skips');
});

/** The first bytes of a PNG whose header claims w×h (a decompression bomb's cheap part). */
function pngHeader(w: number, h: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])), chunk('IEND', Buffer.alloc(0))]);
}
