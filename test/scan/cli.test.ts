import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { dumpContent, writeImage, writeTar } from './helpers.js';
import { runCli } from './cli.js';
import { writeImageParquet, writeParquet } from './parquet-write.js';

const CLI = join(fileURLToPath(new URL('.', import.meta.url)), 'cli.js');
const root = mkdtempSync(join(tmpdir(), 'qkscope-scan-cli-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const model = writeModel(join(root, 'model'), 'hf-vit', makeLayoutWeights('hf-vit', { d: 24, heads: 2, layers: 2, patch: 4, image: 16, seed: 21 })).path;
const N = 22;
const imgDir = join(root, 'imgs');
const files: string[] = [];
const ready = (async () => {
  for (let i = 0; i < N; i++) {
    const p = join(imgDir, `img${String(i).padStart(2, '0')}.png`);
    await writeImage(p, 500 + i, 14 + (i % 3) * 5, 16 + (i % 4) * 3);
    files.push(p);
  }
})();

interface Ran {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a command in this process (as `qkscope` would), capturing its output. */
async function run(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) {
    saved[k] = process.env[k];
    if (v === '') delete process.env[k];
    else process.env[k] = v;
  }
  let stdout = '';
  let stderr = '';
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  // Capture the command's text; pass binary chunks through (the test runner reports results
  // to its parent as serialised buffers on stdout).
  process.stdout.write = ((s: string | Uint8Array, ...rest: unknown[]) => {
    if (typeof s !== 'string') return (ow as (...a: unknown[]) => boolean)(s, ...rest);
    stdout += s;
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array, ...rest: unknown[]) => {
    if (typeof s !== 'string') return (ew as (...a: unknown[]) => boolean)(s, ...rest);
    stderr += s;
    return true;
  }) as typeof process.stderr.write;
  try {
    const status = await runCli(args);
    return { status, stdout, stderr };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

function assertUserError(r: Ran, pattern: RegExp) {
  assert.equal(r.status, 2, `exit ${r.status}\n${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0], /^qkscope: /);
  assert.match(lines[0], pattern);
}

let baseline: Promise<string> | null = null;
/** One uninterrupted scan everything else is compared with. */
function single(): Promise<string> {
  baseline ??= (async () => {
    await ready;
    const out = join(root, 'single');
    const r = await run(['scan', model, imgDir, '--out', out, '--top', '4', '--batch', '3', '--progress-every', '5']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`scanned ${N} images, 0 skipped`));
    // One progress line per 5 images in a pipe.
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('scan: '));
    assert.ok(lines.length >= 4 && lines.length <= 6, r.stderr);
    assert.match(lines[lines.length - 1], new RegExp(`scan: ${N}/${N} images \\(100.0 %\\), [0-9.]+ images/s, ETA 0s`));
    return out;
  })();
  return baseline;
}

function sameContent(a: string, b: string) {
  const x = dumpContent(join(a, 'run.db'));
  const y = dumpContent(join(b, 'run.db'));
  for (const k of Object.keys(x)) assert.deepEqual(y[k], x[k], `table ${k} differs between ${a} and ${b}`);
}

test('a scan killed with SIGKILL at random moments and resumed equals an uninterrupted scan', async () => {
  const ref = await single();
  const out = join(root, 'killed');
  let kills = 0;
  let midScan = 0;
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  // First kill during start-up / setup, then after a random number of committed batches
  // (plus a random delay, so some land in the middle of a batch), then let it finish.
  for (let attempt = 0; attempt < 6; attempt++) {
    const child = spawn(process.execPath, [CLI, 'scan', model, imgDir, '--out', out, '--top', '4', '--batch', '2', '--resume', '--progress-every', '1'], {
      env: { ...process.env, QKSCOPE_SCAN_BATCH_DELAY_MS: '30' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let lines = 0;
    const target = attempt === 0 ? -1 : attempt < 4 ? 1 + Math.floor(rnd() * 3) : Infinity;
    let onTarget: () => void = () => undefined;
    const reached = new Promise<void>((res) => (onTarget = res));
    child.stderr.on('data', (b) => {
      stderr += b;
      lines = (stderr.match(/^scan: \d+\//gm) ?? []).length;
      if (lines >= target) onTarget();
    });
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    const trigger = attempt === 0 ? new Promise<void>((res) => setTimeout(res, 150)) : reached.then(() => new Promise<void>((res) => setTimeout(res, rnd() * 40)));
    const winner = await Promise.race([exited.then((c) => ({ code: c })), trigger.then(() => null)]);
    if (winner) {
      assert.equal(winner.code, 0, stderr);
      break;
    }
    child.kill('SIGKILL');
    await exited;
    kills++;
    if (existsSync(join(out, 'run.db'))) {
      const db = new Database(join(out, 'run.db'), { readonly: true });
      const p = db.prepare('SELECT done, total FROM progress').get() as { done: number; total: number };
      db.close();
      if (p.done > 0 && p.done < p.total) midScan++;
    }
  }
  assert.ok(kills >= 2, `only ${kills} kills`);
  assert.ok(midScan >= 1, 'no kill landed in the middle of the scan');
  const db = new Database(join(out, 'run.db'), { readonly: true });
  assert.equal((db.prepare("SELECT value FROM meta WHERE key = 'status'").get() as { value: string }).value, '"complete"');
  db.close();
  sameContent(ref, out);

  // Without --resume an existing run is refused and left as it was.
  const before = statSync(join(out, 'run.db')).mtimeMs;
  assertUserError(await run(['scan', model, imgDir, '--out', out, '--top', '4']), /already holds a scan \(22 of 22 images processed\); pass --resume/);
  assert.equal(statSync(join(out, 'run.db')).mtimeMs, before);
  // --resume with other settings is refused.
  assertUserError(await run(['scan', model, imgDir, '--out', out, '--top', '5', '--resume']), /cannot resume: the --top differs/);
});

test('SIGINT finishes the batch in flight, exits 130, and --resume completes the scan', async () => {
  const ref = await single();
  const out = join(root, 'sigint');
  const child = spawn(process.execPath, [CLI, 'scan', model, imgDir, '--out', out, '--top', '4', '--batch', '2', '--progress-every', '1'], {
    env: { ...process.env, QKSCOPE_SCAN_BATCH_DELAY_MS: '100' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  await new Promise<void>((res) =>
    child.stderr.on('data', (b) => {
      stderr += b;
      if (/scan: 4\/22/.test(stderr)) res();
    }),
  );
  child.kill('SIGINT');
  assert.equal(await exited, 130, stderr);
  assert.match(stderr, /interrupted after \d+ of 22 images; continue with the same command plus --resume/);
  const r = await run(['scan', model, imgDir, '--out', out, '--top', '4', '--batch', '5', '--resume']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /resuming: \d+ of 22 images already processed/);
  sameContent(ref, out);
});

test('shards (i/N, Slurm and Kubernetes indices) merged equal a single scan; merge checks its inputs', async () => {
  const ref = await single();
  const pattern = join(root, 'shards', 'part-{shard}');
  assert.equal((await run(['scan', model, imgDir, '--out', pattern, '--top', '4', '--shard', '0/3'])).status, 0);
  let r = await run(['scan', model, imgDir, '--out', pattern, '--top', '4', '--shard', 'auto/3', '--batch', '4'], { SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_MIN: '1' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\(shard 1\/3\)/);
  const parts = [0, 1, 2].map((i) => join(root, 'shards', `part-${i}`));
  // Merging before the last shard exists names the missing images.
  assertUserError(await run(['merge', parts[0], parts[1], '--out', join(root, 'm0')]), /images 14–21 are in none of the inputs \(the inputs are shards of 3; have: 0, 1\)/);
  r = await run(['scan', model, imgDir, '--out', pattern, '--top', '4', '--shard', '3', '--batch', '5'], { SLURM_ARRAY_TASK_ID: '', JOB_COMPLETION_INDEX: '2' });
  assert.equal(r.status, 0, r.stderr);
  const db = new Database(join(parts[1], 'run.db'), { readonly: true });
  assert.deepEqual((db.prepare('SELECT MIN(id) AS a, MAX(id) AS b FROM images').get() as { a: number; b: number }), { a: 7, b: 13 });
  db.close();
  const merged = join(root, 'merged');
  r = await run(['merge', parts[2], parts[0], parts[1], '--out', merged]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /merged 3 runs: 22 images \(22 scanned, 0 skipped\)/);
  sameContent(ref, merged);
  const s = JSON.parse(readFileSync(join(merged, 'summary.json'), 'utf8'));
  assert.equal(s.scan.images.done, N);
  assert.ok(existsSync(join(merged, 'U.npy')));
  assertUserError(await run(['merge', parts[0], parts[0], '--out', join(root, 'm1')]), /given twice/);
  assertUserError(await run(['merge', parts[0], ref, '--out', join(root, 'm2')]), /overlaps another input/);
  assertUserError(await run(['merge', parts[0], parts[1], parts[2], '--out', merged]), /already holds a run.db/);
  // A shard scanned with other settings cannot be merged.
  assert.equal((await run(['scan', model, imgDir, '--out', join(root, 'other-k'), '--top', '3', '--shard', '2/3'])).status, 0);
  assertUserError(await run(['merge', parts[0], parts[1], join(root, 'other-k'), '--out', join(root, 'm3')]), /differ in top_k/);
});

test('tar shards and a Parquet file of the same images give the same lists as the folder', async () => {
  const ref = await single();
  await ready;
  const bytes = files.map((f) => readFileSync(f));
  const tarDir = join(root, 'tars');
  mkdirSync(tarDir, { recursive: true });
  await writeTar(join(tarDir, 'val-000.tar'), bytes.slice(0, 10).flatMap((b, i) => [[`k${i}.png`, b] as [string, Buffer], [`k${i}.cls`, Buffer.from(String(i))] as [string, Buffer]]));
  await writeTar(join(tarDir, 'val-001.tar'), bytes.slice(10).map((b, i) => [`k${i + 10}.png`, b] as [string, Buffer]));
  const pq = join(root, 'val.parquet');
  writeImageParquet(pq, bytes.map((b, i) => ({ bytes: b, name: `img${i}.png` })), { rowGroupSize: 8 });
  const refDb = dumpContent(join(ref, 'run.db'));
  for (const [name, input] of [
    ['from-tar', join(tarDir, 'val-{000..001}.tar')],
    ['from-parquet', pq],
  ]) {
    const out = join(root, name);
    const r = await run(['scan', model, input, '--out', out, '--top', '4', '--batch', '4']);
    assert.equal(r.status, 0, r.stderr);
    const got = dumpContent(join(out, 'run.db'));
    assert.deepEqual(got.heap_state, refDb.heap_state, name);
    assert.deepEqual(got.anisotropy, refDb.anisotropy, name);
    const sha = (rows: unknown[]) => rows.map((r) => (r as unknown[])[7]);
    assert.deepEqual(sha(got.images), sha(refDb.images), name);
    const db = new Database(join(out, 'run.db'), { readonly: true });
    const row = db.prepare('SELECT path, source, container, member, name FROM images WHERE id = 12').get() as Record<string, string>;
    db.close();
    if (name === 'from-tar') assert.deepEqual(row, { path: `${join(tarDir, 'val-001.tar')}#k12.png`, source: 'tar', container: join(tarDir, 'val-001.tar'), member: 'k12.png', name: null });
    else assert.deepEqual(row, { path: `${pq}#12`, source: 'parquet', container: pq, member: '12', name: 'img12.png' });
  }
});

test('unreadable images are skipped, counted and listed; bad inputs fail with one clear line and nothing written', async () => {
  await ready;
  const d = join(root, 'mixed');
  mkdirSync(d, { recursive: true });
  for (const i of [0, 1, 2, 3]) copyFileSync(files[i], join(d, `ok${i}.png`));
  copyFileSync(files[4], join(d, 'truncated.png'));
  truncateSync(join(d, 'truncated.png'), 60);
  writeFileSync(join(d, 'empty.jpg'), '');
  writeFileSync(join(d, 'text.png'), 'this is not a png');
  writeFileSync(join(d, 'README.md'), 'ignored');
  const out = join(root, 'mixed-run');
  const r = await run(['scan', model, d, '--out', out, '--top', '2']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /scanned 4 images, 3 skipped/);
  assert.match(r.stdout, /empty\.jpg: empty file/);
  assert.match(r.stdout, /text\.png: cannot decode/);
  assert.match(r.stdout, /truncated\.png: cannot decode/);
  assert.match(r.stderr, /1 file in the folders ignored/);
  const db = new Database(join(out, 'run.db'), { readonly: true });
  const skipped = db.prepare('SELECT path, reason FROM skipped ORDER BY id').all() as { path: string; reason: string }[];
  const topIds = db.prepare('SELECT DISTINCT image_id FROM topk').all() as { image_id: number }[];
  const statuses = db.prepare('SELECT status, COUNT(*) AS n FROM images GROUP BY status ORDER BY status').all();
  db.close();
  assert.deepEqual(skipped.map((s) => s.path.slice(d.length + 1)), ['empty.jpg', 'text.png', 'truncated.png']);
  assert.deepEqual(statuses, [
    { status: 'done', n: 4 },
    { status: 'skipped', n: 3 },
  ]);
  // Skipped images never rank.
  const okIds = new Set([0, 1, 2, 3].map((i) => i + 1)); // empty.jpg is id 0
  for (const t of topIds) assert.ok(okIds.has(t.image_id), `image ${t.image_id} ranked`);

  const empty = join(root, 'empty-dir');
  mkdirSync(empty);
  const out2 = join(root, 'never');
  assertUserError(await run(['scan', model, empty, '--out', out2]), /empty-dir: no images found .* the folder is empty/);
  const docs = join(root, 'docs-only');
  mkdirSync(docs);
  writeFileSync(join(docs, 'a.txt'), 'x');
  assertUserError(await run(['scan', model, docs, '--out', out2]), /docs-only: no images found .*; 1 other file ignored/);
  const pq = join(root, 'captions.parquet');
  writeParquet(pq, { rows: 1, fields: [{ name: 'caption', leaf: { path: ['caption'], type: 'BYTE_ARRAY', utf8: true, values: ['a cat'] } }] });
  assertUserError(await run(['scan', model, pq, '--out', out2]), /captions\.parquet: no image column .*columns: caption \(utf8\)/);
  assertUserError(await run(['scan', model, join(root, 'missing-dir'), '--out', out2]), /missing-dir: no such file or folder/);
  assertUserError(await run(['scan', model, imgDir, '--out', out2, '--shard', '3/3']), /shard index 3 is outside 0..2/);
  assert.ok(!existsSync(out2), 'nothing written for failed inputs');
  // A run that exists is never damaged by a failing command.
  const before = dumpContent(join(out, 'run.db'));
  assertUserError(await run(['scan', model, empty, '--out', out, '--resume']), /no images found/);
  assert.deepEqual(dumpContent(join(out, 'run.db')), before);
});

test('top prints the ranked images with scores (text and JSON)', async () => {
  const ref = await single();
  let r = await run(['top', ref, '--layer', '1', '--head', '0', '--mode', '2', '--sign', '+']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^L1 H0 M2: cosine -?[0-9.]+ \(relative -?[0-9.]+\), σ [0-9.]+; 22 images scanned/);
  assert.match(r.stdout, /sign \+/);
  assert.doesNotMatch(r.stdout, /sign -/);
  const rows = r.stdout.split('\n').filter((l) => /^\s+\d+\s+[0-9.e+-]+\s/.test(l));
  assert.equal(rows.length, 4);
  r = await run(['top', join(ref, 'run.db'), '--layer', '1', '--head', '0', '--mode', '2', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.deepEqual(j.lists.map((l: { sign: string }) => l.sign), ['+', '-']);
  const db = new Database(join(ref, 'run.db'), { readonly: true });
  const want = db.prepare('SELECT image_id, score, image_path FROM topk WHERE layer = 1 AND head = 0 AND mode = 2 AND sign = -1 ORDER BY rank').all() as { image_id: number; score: number; image_path: string }[];
  db.close();
  assert.deepEqual(
    j.lists[1].entries.map((e: { image_id: number; score: number; path: string }) => ({ image_id: e.image_id, score: e.score, image_path: e.path })),
    want,
  );
  for (let i = 1; i < want.length; i++) assert.ok(want[i - 1].score >= want[i].score);
  assertUserError(await run(['top', ref, '--layer', '5', '--head', '0', '--mode', '0']), /--layer 5: not scanned/);
  assertUserError(await run(['top', ref, '--layer', '0', '--head', '0', '--mode', '99']), /--mode 99: heads have modes 0..11/);
  assertUserError(await run(['top', join(root, 'nowhere'), '--layer', '0', '--head', '0', '--mode', '0']), /no such run directory/);
});
