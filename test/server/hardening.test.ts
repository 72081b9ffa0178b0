/**
 * `qkscope serve` under a hostile or careless client, and the run data the views must not get
 * wrong: links out of RUNS_DIR, scans of images elsewhere, cross-site uploads, upload floods and
 * slow bodies, aborted uploads, missing / empty RUNS_DIR, text runs, the run's own anisotropy
 * baseline, and the Mode view's batched maps (equal to the one-image endpoints, cached, ETag).
 * (The 1 100-connection flood under `ulimit -n 1024` is in test/hostile/serve.ts.)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/paths.js';
import { UserError } from '../../src/errors.js';
import { connectionBudget, openFileLimit, startServer, type RunningServer } from '../../src/server/server.js';
import { layerCurve } from '../../src/analysis/compare.js';
import { loadSpec } from '../../src/arch/load.js';
import { preprocessFor } from '../../src/images/preprocess.js';
import { ListingSource } from '../../src/images/source.js';
import { fileListing } from '../../src/images/sources.js';
import { runContributions } from '../../src/jobs/contributions.js';
import { makeServeFixture, type ServeFixture } from './fixture.js';
import { raw } from './helpers.js';

let fx: ServeFixture;
const servers: RunningServer[] = [];

before(async () => {
  fx = await makeServeFixture();
  writeFileSync(join(fx.root, 'secret.txt'), 'top secret');
});

after(async () => {
  for (const s of servers) await s.close();
});

async function serve(o: Partial<Parameters<typeof startServer>[0]> = {}): Promise<RunningServer> {
  const s = await startServer({ runsDir: fx.runsDir, port: 0, ...o });
  servers.push(s);
  return s;
}

/** A copy of run vit-a's files under `dir` (summary edited by `edit`). */
function copyRun(dir: string, edit: (s: Record<string, any>) => void = () => undefined, files = ['U.npy', 'V.npy', 'key_salience.npy', 'heads.csv']): void {
  mkdirSync(dir, { recursive: true });
  const s = JSON.parse(readFileSync(join(fx.runsDir, 'vit-a', 'summary.json'), 'utf8'));
  edit(s);
  writeFileSync(join(dir, 'summary.json'), JSON.stringify(s));
  for (const f of files) writeFileSync(join(dir, f), readFileSync(join(fx.runsDir, 'vit-a', f)));
}

/** Sends headers and part of a body, then waits (a slow client). */
function slowUpload(port: number, headers: Record<string, string> = {}): { done: Promise<{ status: number; body: string }>; abort: () => void } {
  let abort = () => undefined as void;
  const done = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/api/images', method: 'POST', headers: { 'content-length': '100000', 'content-type': 'image/png', ...headers } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', (e) => reject(e));
    req.write(Buffer.alloc(1000, 1));
    abort = () => req.destroy();
  });
  done.catch(() => undefined);
  return { done, abort: () => abort() };
}

describe('files are served only from inside RUNS_DIR', () => {
  test('a link inside a run pointing outside RUNS_DIR is refused (files, arrays)', async () => {
    const dir = join(fx.runsDir, 'linked');
    copyRun(dir, (s) => (s.files = { ...s.files, 'notes.csv': 'a link out' }), ['V.npy', 'key_salience.npy']);
    symlinkSync(join(fx.root, 'secret.txt'), join(dir, 'notes.csv'));
    symlinkSync(join(fx.runsDir, 'vit-a', 'U.npy'), join(dir, 'U.npy')); // a link that stays inside: fine
    const s = await serve();
    const r = await raw(s.port, '/api/runs/linked/files/notes.csv');
    assert.equal(r.status, 404, r.body.toString());
    assert.doesNotMatch(r.body.toString(), /top secret/);
    assert.match(r.json().error, /inside RUNS_DIR/);
    const u = await raw(s.port, '/api/runs/linked/files/U.npy');
    assert.equal(u.status, 200);
    assert.equal(u.body.subarray(1, 6).toString(), 'NUMPY');
  });

  test('scan images outside RUNS_DIR are refused unless allowed', async () => {
    // vit-a's run.db lists images in fx.imagesDir, outside RUNS_DIR.
    const closed = await serve();
    const m = (await raw(closed.port, '/api/runs/vit-a/modes/0/0/0/maps')).json();
    assert.equal(m.refused, m.images.length);
    assert.ok(m.images.length > 0 && m.images.every((i: { maps: unknown; error: { status: number } }) => i.maps === null && i.error.status === 403));
    assert.match(m.refused_hint, /--images DIR.*--allow-images DIR.*--allow-scan-images/);
    const g = (await raw(closed.port, '/api/gallery?run=vit-a')).json();
    assert.equal(g.images.length, 0);
    assert.equal(g.refused, 6);
    assert.equal((await raw(closed.port, '/api/runs/vit-a/modes/0/0/0/top/pos/0')).status, 403);
    for (const open of [await serve({ allowImages: [fx.imagesDir] }), await serve({ allowScanImages: true })]) {
      const ok = (await raw(open.port, '/api/runs/vit-a/modes/0/0/0/maps')).json();
      assert.equal(ok.refused, 0);
      assert.ok(ok.images.every((i: { maps: unknown }) => i.maps !== null));
    }
  });
});

describe('cross-site requests', () => {
  test('a POST from another origin (or cross-site fetch metadata) is refused; same origin and no Origin are fine', async () => {
    const s = await serve();
    const png = readFileSync(fx.images[0]);
    const post = (headers: Record<string, string>) => raw(s.port, '/api/images', { method: 'POST', body: png, headers: { 'content-type': 'text/plain', ...headers } });
    const refused: Record<string, string>[] = [{ origin: 'http://evil.example' }, { origin: 'null' }, { 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }, { origin: `http://localhost:${s.port + 1}` }];
    for (const h of refused) {
      const r = await post(h);
      assert.equal(r.status, 403, JSON.stringify(h));
      assert.match(r.json().error, /cross-site request refused/);
    }
    assert.equal((await post({ origin: `http://127.0.0.1:${s.port}`, 'sec-fetch-site': 'same-origin' })).status, 201);
    assert.equal((await post({})).status, 201); // curl
  });
});

describe('upload limits', () => {
  test('uploads beyond the concurrency cap are 503 at once; reads go on; slow bodies are 408', async () => {
    const s = await serve({ maxConcurrentUploads: 2, uploadTimeoutMs: 1500 });
    const slow = [slowUpload(s.port), slowUpload(s.port)];
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    const third = await slowUpload(s.port).done;
    assert.equal(third.status, 503);
    assert.ok(Date.now() - t0 < 1000, 'refused at once');
    assert.match(JSON.parse(third.body).error, /busy/);
    assert.equal((await raw(s.port, '/api/runs')).status, 200);
    const [a, b] = await Promise.all(slow.map((x) => x.done));
    assert.equal(a.status, 408);
    assert.equal(b.status, 408);
    assert.match(JSON.parse(a.body).error, /too slow/);
    // The slots are free again.
    assert.equal((await raw(s.port, '/api/images', { method: 'POST', body: readFileSync(fx.images[1]) })).status, 201);
  });

  test('the connection cap comes from the open-file limit', async () => {
    const s = await serve();
    assert.equal(s.server.maxConnections, connectionBudget(openFileLimit()));
    assert.equal(connectionBudget(1024), 768);
    assert.equal(connectionBudget(65536), 49152);
    assert.ok(connectionBudget(100) >= 16);
    assert.ok(s.server.headersTimeout > 0 && s.server.headersTimeout <= 15_000);
  });

  test('an aborted upload logs one line with --log, nothing without', async () => {
    const lines: string[] = [];
    const warns: string[] = [];
    const logged = await serve({ log: (l) => lines.push(l), warn: (l) => warns.push(l) });
    const quiet = await serve({ warn: (l) => warns.push(l) });
    for (const s of [logged, quiet]) {
      const u = slowUpload(s.port);
      await new Promise((r) => setTimeout(r, 300));
      u.abort();
      await new Promise((r) => setTimeout(r, 300));
    }
    const about = lines.filter((l) => l.includes('/api/images'));
    assert.equal(lines.filter((l) => !/^(GET|POST) \S+ \d{3} \d+ms$/.test(l)).length, 1, lines.join('\n'));
    assert.equal(about.length, 1, about.join('\n'));
    assert.match(about[0], /^POST \/api\/images: the client closed the connection$/);
    assert.deepEqual(warns, []);
  });
});

describe('RUNS_DIR', () => {
  test('a missing RUNS_DIR is one UserError line', async () => {
    await assert.rejects(startServer({ runsDir: join(fx.root, 'nope'), port: 0 }), (e: unknown) => e instanceof UserError && /nope: not a folder; .*qkscope svd MODEL --out/.test(e.message) && !e.message.includes('\n'));
  });

  test('an empty RUNS_DIR lists no runs and says where', async () => {
    const empty = join(tempDir('qkscope-serve-empty-'), 'runs');
    mkdirSync(empty);
    const s = await serve({ runsDir: empty });
    const r = (await raw(s.port, '/api/models')).json();
    assert.deepEqual(r.runs, []);
    assert.equal(r.runs_dir, empty);
  });
});

describe('run data', () => {
  test('a text run has no image views: 422 "not a vision model", modality text', async () => {
    copyRun(join(fx.runsDir, 'text-run'), (s) => {
      s.model.modality = 'text';
      s.model.family = 'text-bert';
    });
    const s = await serve({ imagesDirs: [fx.imagesDir] });
    const brief = (await raw(s.port, '/api/runs')).json().runs.find((r: { id: string }) => r.id === 'text-run');
    assert.equal(brief.modality, 'text');
    assert.equal((await raw(s.port, '/api/runs/text-run/heads/0/0')).json().modality, 'text');
    const key = (await raw(s.port, '/api/gallery')).json().images[0].key;
    const r = await raw(s.port, `/api/gallery/${key}?run=text-run`, { method: 'POST' });
    assert.equal(r.status, 422);
    assert.match(r.json().error, /not a vision model/);
  });

  test('anisotropy: the run’s anisotropy.json, else the scan’s summary, with relative curves as compare --relative', async () => {
    const values = [0.25, 0.125, 0.0625];
    copyRun(join(fx.runsDir, 'aniso-json'));
    writeFileSync(join(fx.runsDir, 'aniso-json', 'anisotropy.json'), JSON.stringify({ command: 'anisotropy', layers: values.map((v, layer) => ({ layer, anisotropy: v, images: 500, anisotropy_interval: [v - 0.01, v + 0.01] })) }));
    copyRun(join(fx.runsDir, 'aniso-scan'), (s) => (s.scan = { layers_detail: values.map((v, layer) => ({ layer, anisotropy: v / 2, images: 300 })) }));
    const s = await serve();
    const a = (await raw(s.port, '/api/runs/aniso-json/anisotropy')).json();
    assert.equal(a.source, 'anisotropy.json');
    assert.equal(a.images, 500);
    assert.match(a.description, /anisotropy\.json.*500 images/);
    assert.deepEqual(a.layers.map((l: { value: number }) => l.value), values);
    const summary = JSON.parse(readFileSync(join(fx.runsDir, 'aniso-json', 'summary.json'), 'utf8'));
    const want = layerCurve(summary, 'weighted', values);
    for (let l = 0; l < 3; l++) {
      assert.equal(a.relative.weighted.value[l], summary.layers[l].mean_weighted_cosine - values[l]);
      assert.equal(a.relative.weighted.value[l], want.value[l]);
      assert.equal(a.relative.weighted.band95.lo[l], want.band95.lo[l]);
    }
    const b = (await raw(s.port, '/api/runs/aniso-scan/anisotropy')).json();
    assert.equal(b.source, 'scan');
    assert.equal(b.images, 300);
    assert.deepEqual(b.layers.map((l: { value: number }) => l.value), values.map((v) => v / 2));
  });

  test('a model that is not the run’s (σ differ) is 409, not wrong numbers', async () => {
    copyRun(join(fx.runsDir, 'other-sigma'), (s) => (s.layers[1].heads[0].sigma = s.layers[1].heads[0].sigma.map((x: number) => x * 1.01)));
    const s = await serve({ imagesDirs: [fx.imagesDir] });
    const up = (await raw(s.port, '/api/images', { method: 'POST', body: readFileSync(fx.images[2]) })).json();
    const r = await raw(s.port, `/api/runs/other-sigma/images/${up.id}/maps?layer=1&head=0&mode=0`);
    assert.equal(r.status, 409);
    assert.match(r.json().error, /not the one the run analysed/);
    assert.equal((await raw(s.port, `/api/runs/other-sigma/images/${up.id}/maps?layer=0&head=0&mode=0`)).status, 200);
  });
});

describe('the same numbers as the CLI', () => {
  test('image modes and the decomposition equal `qkscope contributions` (runContributions) on the same image', async () => {
    const s = await serve({ imagesDirs: [fx.imagesDir] });
    const up = (await raw(s.port, '/api/images', { method: 'POST', body: readFileSync(fx.images[3]) })).json();
    const { spec, close } = await loadSpec(fx.runs['vit-a'].model);
    try {
      const { pp, options } = preprocessFor(spec);
      const source = new ListingSource(fileListing([fx.images[3]]), pp, options);
      const all = await runContributions(spec, { source }, { layer: 1, head: 2 });
      const served = (await raw(s.port, `/api/runs/vit-a/images/${up.id}/modes?layer=1&head=2`)).json();
      assert.equal(served.modes.length, all.result.modes.length);
      const close1 = (a: number, b: number) => Math.abs(a - b) <= 1e-4 * Math.max(1e-3, Math.abs(b));
      all.result.modes.forEach((m, i) => {
        assert.equal(served.modes[i].mode, m.mode, `rank ${i}`);
        assert.ok(close1(served.modes[i].contribution, m.contribution), `mode ${m.mode}: ${served.modes[i].contribution} vs ${m.contribution}`);
      });
      assert.ok(close1(served.total, all.result.total));
      // One query patch: the decomposition's per-mode weighted parts are the CLI's --query-patch contributions.
      const one = await runContributions(spec, { source }, { layer: 1, head: 2, queryPatch: [2, 5] });
      const d = (await raw(s.port, `/api/runs/vit-a/images/${up.id}/decomposition?layer=1&head=2&patch=21`)).json();
      for (const m of one.result.modes) assert.ok(close1(d.modes[m.mode].contribution, m.contribution), `mode ${m.mode}`);
      source.close();
    } finally {
      await close();
    }
  });
});

describe('the Mode view’s batched maps', () => {
  test('one reply with every top image: the same maps as the one-image endpoints, a JPEG crop, cached with an ETag', async () => {
    const s = await serve({ imagesDirs: [fx.imagesDir] });
    const r = await raw(s.port, '/api/runs/vit-a/modes/2/1/0/maps?thumb=96');
    assert.equal(r.status, 200, r.body.toString());
    const m = r.json();
    assert.deepEqual(m.grid, [8, 8]);
    assert.equal(m.normalization, 'percentile');
    assert.equal(m.images.length, 6);
    for (const im of m.images) {
      assert.match(im.thumb, /^data:image\/jpeg;base64,\/9j\//);
      const one = (await raw(s.port, `/api/runs/vit-a/modes/2/1/0/top/${im.sign > 0 ? 'pos' : 'neg'}/${im.rank}`)).json();
      assert.equal(one.image.id, im.id);
      assert.equal(im.maps.qmax, one.qmax);
      assert.equal(im.maps.kmax, one.kmax);
      for (let p = 0; p < 64; p++) assert.ok(Math.abs(im.maps.q[p] - one.q[p]) <= 1e-5 * Math.max(1, Math.abs(one.q[p])));
      const byId = (await raw(s.port, `/api/runs/vit-a/images/${im.id}/maps?layer=2&head=1&mode=0&sign=${im.sign > 0 ? 'pos' : 'neg'}`)).json();
      assert.deepEqual(byId.q, one.q);
      const jpg = await raw(s.port, `/api/runs/vit-a/images/${im.id}/thumb.jpg`);
      assert.equal(jpg.headers['content-type'], 'image/jpeg');
    }
    const etag = r.headers.etag as string;
    assert.match(etag, /^"[0-9a-f]{32}"$/);
    const again = await raw(s.port, '/api/runs/vit-a/modes/2/1/0/maps?thumb=96', { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    const cached = (await raw(s.port, '/api/runs/vit-a/modes/2/1/0/maps?thumb=96')).json();
    assert.equal(cached.compute_ms, 0);
    assert.deepEqual(cached.images, m.images);
  });

  test('an image id from a scan is found again by a new server (deep links survive a restart)', async () => {
    const a = await serve({ imagesDirs: [fx.imagesDir] });
    const id = (await raw(a.port, '/api/runs/vit-a/modes/0/0/0/top/pos/0')).json().image.id;
    const b = await serve({ imagesDirs: [fx.imagesDir] });
    const r = await raw(b.port, `/api/runs/vit-a/images/${id}/input.png`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'image/png');
  });
});
