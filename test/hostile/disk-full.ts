/**
 * A full disk never corrupts a scan (run by `npm run test:hostile`: it mounts a small tmpfs, so it
 * needs root, as CI has). On a tmpfs filled to the brim:
 * - creating the run fails with one line naming the path and "the disk is full", and leaves no
 *   database, no partial files and no lock behind; once space is freed the same command works;
 * - a scan that runs out of space mid-way stops with one line; once space is freed `--resume`
 *   completes it, and the result equals an uninterrupted scan.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { dumpContent, writeImage } from '../scan/helpers.js';
import { runCli, type CliRun } from './run-cli.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-diskfull-'));
const mnt = join(root, 'mnt');
let model = '';
const imgs = join(root, 'imgs');
const LIMITS = { addressSpaceMb: 16384, timeoutMs: 60_000 };

before(async () => {
  model = writeModel(join(root, 'model'), 'hf-vit', makeLayoutWeights('hf-vit', { d: 24, heads: 2, layers: 2, patch: 4, image: 16, seed: 8 })).path;
  for (let i = 0; i < 12; i++) await writeImage(join(imgs, `i${String(i).padStart(2, '0')}.png`), 300 + i, 18, 16);
  mkdirSync(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
  } catch (e) {
    throw new Error(`test:hostile needs to mount a small tmpfs (run as root, as CI does): ${(e as Error).message.split('\n')[0]}`);
  }
});

after(() => {
  try {
    execFileSync('umount', [mnt]);
  } catch {
    /* not mounted */
  }
  rmSync(root, { recursive: true, force: true });
});

/** Fills the tmpfs so that only about `leave` bytes stay free; returns a function that frees it. */
function fill(leave: number): () => void {
  const free = () => {
    const s = statfsSync(mnt);
    return s.bavail * s.bsize;
  };
  const filler = join(mnt, 'filler');
  let k = 0;
  for (;;) {
    const room = free() - leave;
    if (room <= 0) break;
    writeFileSync(`${filler}${k++}`, Buffer.alloc(Math.min(room, 1 << 20)));
  }
  return () => {
    for (const f of readdirSync(mnt)) if (f.startsWith('filler')) rmSync(join(mnt, f));
  };
}

function oneErrorLine(r: CliRun, re: RegExp) {
  const where = `exit ${r.status}\n${r.lines.join('\n')}\n${r.stdout}`;
  assert.equal(r.status, 2, where);
  const errs = r.lines.filter((l) => l.startsWith('qkscope: '));
  assert.equal(errs.length, 1, where);
  assert.match(errs[0], re, where);
  assert.doesNotMatch(r.lines.join('\n'), /internal error|\n\s+at /, where);
}

const scan = (out: string, ...more: string[]) => ['scan', model, imgs, '--out', out, '--top', '3', '--batch', '2', ...more];

test('a full disk while the run is created: one line, nothing half-made left; freed, the same command works', async () => {
  const ref = join(root, 'ref');
  const r0 = await runCli(scan(ref), LIMITS);
  assert.equal(r0.status, 0, r0.lines.join('\n'));
  const out = join(mnt, 'run');
  const release = fill(8 * 1024);
  try {
    const r = await runCli(scan(out), LIMITS);
    oneErrorLine(r, /the disk is full/);
    const left = existsSync(out) ? readdirSync(out) : [];
    assert.ok(!left.some((f) => f.startsWith('run.db')), `no database or partial database left: ${left.join(', ')}`);
    assert.ok(!left.some((f) => f.endsWith('.partial')), `no partial files left: ${left.join(', ')}`);
    assert.ok(!left.includes('.qkscope.lock'), 'no lock left');
  } finally {
    release();
  }
  const again = await runCli(scan(out, '--resume'), LIMITS);
  assert.equal(again.status, 0, again.lines.join('\n'));
  const a = dumpContent(join(ref, 'run.db'));
  const b = dumpContent(join(out, 'run.db'));
  for (const k of Object.keys(a)) assert.deepEqual(b[k], a[k], `table ${k}`);
  rmSync(out, { recursive: true, force: true });
});

test('a full disk in the middle of a scan: one line; freed, --resume completes it, equal to an uninterrupted scan', async () => {
  const ref = join(root, 'ref');
  const out = join(mnt, 'mid');
  // A scan stopped after a few batches (SIGINT), so the database exists.
  const child = spawn(process.execPath, [join(process.cwd(), 'dist', 'src', 'cli', 'bin.js'), ...scan(out, '--progress-every', '1')], {
    env: { ...process.env, QKSCOPE_SCAN_BATCH_DELAY_MS: '150' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (b) => {
    err += b;
    if (/scan: 4\//.test(err)) child.kill('SIGINT');
  });
  const code = await new Promise<number | null>((res) => child.on('exit', res));
  assert.equal(code, 130, err);
  const release = fill(2 * 1024);
  try {
    const r = await runCli(scan(out, '--resume'), LIMITS);
    oneErrorLine(r, /disk is full|SQLITE_FULL|input\/output error/);
  } finally {
    release();
  }
  const done = await runCli(scan(out, '--resume'), LIMITS);
  assert.equal(done.status, 0, done.lines.join('\n'));
  const a = dumpContent(join(ref, 'run.db'));
  const b = dumpContent(join(out, 'run.db'));
  for (const k of Object.keys(a)) assert.deepEqual(b[k], a[k], `table ${k}`);
});
