/**
 * `qkscope serve` on the real ViT-Tiny and real photos (../shared; skipped where it is absent):
 * the logit decomposition adds up on real activations, and, where the scan command is built,
 * the live query/key maps of a top image reproduce the scores the scan stored.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLI, HAVE_SHARED, REAL_IMAGES, REAL_VIT_TINY, REPO_ROOT, tempDir } from '../helpers/paths.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { raw } from './helpers.js';

const skip = HAVE_SHARED ? false : '../shared (real ViT-Tiny and photos) is not beside the checkout';
let srv: RunningServer;
let runsDir: string;
let photos: string[] = [];
let scanned = false;

before(async () => {
  if (!HAVE_SHARED) return;
  runsDir = join(tempDir('qkscope-serve-real-'), 'runs');
  photos = readdirSync(REAL_IMAGES)
    .filter((f) => /\.jpe?g$/i.test(f))
    .sort()
    .slice(0, 8)
    .map((f) => join(REAL_IMAGES, f));
  const scanJs = join(REPO_ROOT, 'dist', 'src', 'cli', 'scan.js');
  if (existsSync(scanJs)) {
    // The scan writes the svd results and run.db into one run directory.
    const list = join(runsDir, '..', 'list.txt');
    writeFileSync(list, photos.join('\n') + '\n');
    // A script file, not --eval: the scan's worker threads inherit the exec arguments.
    const script = join(runsDir, '..', 'scan.mjs');
    writeFileSync(
      script,
      `import { scanCommand } from ${JSON.stringify(pathToFileURL(scanJs).href)};
await scanCommand().exitOverride().parseAsync(process.argv.slice(2), { from: 'user' });\n`,
    );
    const r = spawnSync(process.execPath, [script, REAL_VIT_TINY, list, '--out', join(runsDir, 'vit-tiny'), '--top', '2', '--layers', '0,5,11', '--batch', '4'], {
      encoding: 'utf8',
    });
    scanned = r.status === 0;
    if (!scanned) process.stderr.write(`(serve real-data test: scan unavailable, svd only: status ${r.status}: ${r.stderr.trim().split('\n').slice(-2).join(' ')})\n`);
  }
  if (!scanned) {
    const r = spawnSync(process.execPath, [CLI, 'svd', REAL_VIT_TINY, '--out', join(runsDir, 'vit-tiny'), '--no-figures'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  }
  srv = await startServer({ runsDir, port: 0, imagesDirs: [REAL_IMAGES] });
});

after(async () => {
  await srv?.close();
});

test('real ViT-Tiny: the decomposition adds up to the model’s logits on a photo', { skip }, async () => {
  const up = await raw(srv.port, '/api/images', { method: 'POST', body: readFileSync(photos[3]) });
  assert.equal(up.status, 201);
  const id = up.json().id;
  for (const [l, h, patch] of [
    [0, 0, 0],
    [5, 1, 100],
    [11, 2, 195],
  ]) {
    const r = await raw(srv.port, `/api/runs/vit-tiny/images/${id}/decomposition?layer=${l}&head=${h}&patch=${patch}&top=6`);
    assert.equal(r.status, 200, r.body.toString());
    const d = r.json();
    assert.equal(d.tokens.count, 197);
    let worst = 0;
    for (let j = 0; j < 197; j++) {
      const sum = d.parts.reduce((a: number, p: { values: number[] }) => a + p.values[j], 0);
      worst = Math.max(worst, Math.abs(sum - d.model_logit[j]));
    }
    assert.ok(worst < 1e-3, `L${l} H${h}: parts differ from the logits by ${worst}`);
    assert.ok(d.softmax_max_abs_diff < 1e-5);
    // Real heads have query biases: the salience term is not zero.
    const sal = d.parts.find((p: { kind: string }) => p.kind === 'key_salience');
    assert.ok(sal.values.some((v: number) => Math.abs(v) > 1e-3));
  }
});

test('real ViT-Tiny: live maps of a top image reproduce the scan’s scores', { skip }, async (t) => {
  if (!scanned) {
    t.skip('the scan command is not built');
    return;
  }
  for (const [l, h, n] of [
    [0, 0, 0],
    [5, 1, 3],
    [11, 2, 10],
  ]) {
    const m = (await raw(srv.port, `/api/runs/vit-tiny/modes/${l}/${h}/${n}`)).json();
    assert.equal(m.has_scan, true);
    assert.equal(m.top.length, 4);
    for (const e of m.top) {
      const r = await raw(srv.port, `/api/runs/vit-tiny/modes/${l}/${h}/${n}/top/${e.sign > 0 ? 'pos' : 'neg'}/${e.rank}`);
      assert.equal(r.status, 200, r.body.toString());
      const live = r.json();
      assert.ok(Math.abs(live.qmax - e.qmax) < 1e-3 * Math.max(1, Math.abs(e.qmax)), `L${l} H${h} M${n}: qmax ${live.qmax} vs ${e.qmax}`);
      assert.ok(Math.abs(live.kmax - e.kmax) < 1e-3 * Math.max(1, Math.abs(e.kmax)), `kmax ${live.kmax} vs ${e.kmax}`);
      assert.ok(Math.abs(live.score - e.score) < 1e-3 * Math.max(1, Math.abs(e.score)));
    }
  }
  const a = (await raw(srv.port, '/api/runs/vit-tiny/anisotropy')).json();
  assert.equal(a.source, 'scan');
  assert.equal(a.layers.filter((x: { value: number | null }) => x.value !== null).length, 3);
});
