/**
 * `qkscope serve` JSON API: every endpoint on generated runs (two ViTs with a scan database, a
 * BEiT with relative position bias), the logit decomposition against the model's own logits,
 * path traversal attempts, oversized / invalid uploads, bad parameters, and the CLI command.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { makeServeFixture, type ServeFixture } from './fixture.js';
import { raw } from './helpers.js';

let fx: ServeFixture;
let srv: RunningServer;
let webRoot: string;
const LIMIT = 64 * 1024;

before(async () => {
  fx = await makeServeFixture({ beit: true });
  // A stand-in front-end build, so static serving is tested without running Vite here.
  webRoot = join(fx.root, 'web');
  mkdirSync(join(webRoot, 'assets'), { recursive: true });
  writeFileSync(join(webRoot, 'index.html'), '<!doctype html><title>qkscope</title><main id="app"></main>');
  writeFileSync(join(webRoot, 'assets', 'app.js'), 'console.log(1)');
  writeFileSync(join(fx.root, 'secret.txt'), 'top secret');
  // A symlink inside RUNS_DIR pointing outside must not expose anything.
  symlinkSync(fx.root, join(fx.runsDir, 'escape'));
  srv = await startServer({ runsDir: fx.runsDir, port: 0, imagesDirs: [fx.imagesDir], maxUploadBytes: LIMIT, maxPixels: 40_000_000, webRoot });
});

after(async () => {
  await srv?.close();
});

const get = (path: string) => raw(srv.port, path);
const enc = encodeURIComponent;

async function upload(path: string, name = 'photo.png') {
  const r = await raw(srv.port, '/api/images', { method: 'POST', body: readFileSync(path), headers: { 'content-type': 'image/png', 'x-filename': name } });
  assert.equal(r.status, 201, r.body.toString());
  return r.json() as { id: string; label: string; width: number; height: number };
}

describe('listing and summaries', () => {
  test('GET /api lists the endpoints', async () => {
    const r = await get('/api');
    assert.equal(r.status, 200);
    const b = r.json();
    assert.equal(b.docs, 'docs/API.md');
    assert.ok(b.endpoints.length >= 14);
    assert.ok(b.endpoints.some((e: { path: string }) => e.path === '/api/runs/:run/images/:image/decomposition'));
  });

  test('GET /api/runs finds nested runs and skips symlinks leaving RUNS_DIR', async () => {
    const r = await get('/api/runs');
    assert.equal(r.status, 200);
    const ids = r.json().runs.map((x: { id: string }) => x.id).sort();
    assert.deepEqual(ids, ['beit', 'group/vit-b', 'vit-a']);
    const a = r.json().runs.find((x: { id: string }) => x.id === 'vit-a');
    assert.equal(a.has_scan, true);
    assert.equal(a.dims.layers, 3);
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
  });

  test('GET /api/models gives curves with chance bands and per-head values', async () => {
    const r = await get('/api/models');
    assert.equal(r.status, 200);
    const b = r.json().runs.find((x: { id: string }) => x.id === 'group/vit-b');
    assert.deepEqual(b.depth, [0, 0.25, 0.5, 0.75, 1]);
    assert.equal(b.weighted.value.length, 5);
    assert.equal(b.plain.band95.lo.length, 5);
    for (let l = 0; l < 5; l++) assert.ok(b.weighted.band95.lo[l] < 0 && b.weighted.band95.hi[l] > 0);
    assert.equal(b.heads.length, 5);
    assert.equal(b.heads[0].length, 3);
    const s = JSON.parse(readFileSync(join(fx.runsDir, 'group', 'vit-b', 'summary.json'), 'utf8'));
    assert.equal(b.heads[2][1].weighted, s.layers[2].heads[1].weighted_cosine);
    assert.equal(b.weighted.value[3], s.layers[3].mean_weighted_cosine);
  });

  test('GET /api/runs/:run returns the summary (ids with a slash are one encoded segment)', async () => {
    const r = await get(`/api/runs/${enc('group/vit-b')}`);
    assert.equal(r.status, 200);
    assert.equal(r.json().summary.kind, 'svd');
    assert.equal(r.json().id, 'group/vit-b');
    assert.equal((await get('/api/runs/nope')).status, 404);
  });

  test('GET /api/runs/:run/heads/:l/:h: spectrum, cosines, bands, salience', async () => {
    const r = await get('/api/runs/vit-a/heads/1/2');
    assert.equal(r.status, 200);
    const b = r.json();
    assert.equal(b.modes.length, 16);
    assert.ok(b.modes[0].sigma >= b.modes[1].sigma);
    assert.ok(Math.abs(b.modes[0].sigma_scaled - b.modes[0].sigma / 4) < 1e-12);
    assert.ok(b.chance.mode95.hi > 0 && b.chance.mode99.hi > b.chance.mode95.hi);
    assert.equal(b.salience_along_v.length, 16);
    // s lies in the row space of W_k, spanned by the v_n: its parts along them recover its norm.
    const norm = Math.hypot(...b.salience_along_v);
    assert.ok(Math.abs(norm - b.salience_norm) < 1e-4 * Math.max(1, b.salience_norm), `${norm} vs ${b.salience_norm}`);
    assert.equal(b.modes.filter((m: { has_images: boolean }) => m.has_images).length, 3);
  });

  test('bad layer / head / mode values are 400 with a message', async () => {
    for (const p of ['/api/runs/vit-a/heads/3/0', '/api/runs/vit-a/heads/0/3', '/api/runs/vit-a/heads/-1/0', '/api/runs/vit-a/heads/x/0', '/api/runs/vit-a/modes/0/0/16']) {
      const r = await get(p);
      assert.equal(r.status, 400, p);
      assert.match(r.json().error, /layer|head|mode/);
    }
  });

  test('files: only the files the summary lists', async () => {
    const ok = await get('/api/runs/vit-a/files/heads.csv');
    assert.equal(ok.status, 200);
    assert.match(ok.body.toString(), /^layer,head,depth/);
    const npy = await get('/api/runs/vit-a/files/U.npy');
    assert.equal(npy.status, 200);
    assert.equal(npy.body.subarray(1, 6).toString(), 'NUMPY');
    assert.equal((await get('/api/runs/vit-a/files/run.db')).status, 404);
    assert.equal((await get('/api/runs/vit-a/files/heatmap.png')).status, 404); // --no-figures
  });

  test('unknown endpoints 404, wrong methods 405', async () => {
    assert.equal((await get('/api/nothing')).status, 404);
    assert.equal((await raw(srv.port, '/api/runs', { method: 'POST' })).status, 405);
    assert.equal((await raw(srv.port, '/api/images', { method: 'GET' })).status, 405);
  });
});

describe('path traversal is refused', () => {
  const attempts = [
    '/api/runs/..%2F..%2Fsecret.txt',
    '/api/runs/..%2F..',
    '/api/runs/%2Fetc/heads/0/0',
    '/api/runs/..%2Fruns%2Fvit-a/heads/0/0',
    '/api/runs/escape',
    '/api/runs/escape%2Fruns%2Fvit-a',
  ];
  for (const p of attempts) {
    test(`GET ${p}`, async () => {
      const r = await get(p);
      assert.ok(r.status === 403 || r.status === 404, `${p}: ${r.status}`);
      assert.doesNotMatch(r.body.toString(), /top secret/);
      if (p.includes('..')) assert.equal(r.status, 403);
    });
  }
  const fileAttempts = ['..%2F..%2Fsecret.txt', '%2E%2E%2Fsummary.json', '..%5C..%5Csecret.txt', 'summary.json%00.csv'];
  for (const f of fileAttempts) {
    test(`GET /api/runs/vit-a/files/${f}`, async () => {
      const r = await get(`/api/runs/vit-a/files/${f}`);
      assert.ok(r.status === 403 || r.status === 404 || r.status === 400, `${f}: ${r.status}`);
      assert.doesNotMatch(r.body.toString(), /top secret/);
    });
  }
  const staticAttempts = ['/../secret.txt', '/..%2Fsecret.txt', '/%2e%2e/%2e%2e/secret.txt', '/assets/../../secret.txt', '/assets/..%2F..%2Fsecret.txt', '//etc/passwd', '/%00'];
  for (const p of staticAttempts) {
    test(`static ${p}`, async () => {
      const r = await get(p);
      assert.ok([400, 403, 404].includes(r.status), `${p}: ${r.status}`);
      assert.doesNotMatch(r.body.toString(), /top secret|root:/);
    });
  }
  test('raw `..` segments in an API path are normalised away, never followed', async () => {
    const r = await get('/api/runs/vit-a/files/../../../../secret.txt');
    assert.ok([403, 404].includes(r.status));
    assert.doesNotMatch(r.body.toString(), /top secret/);
  });
  test('gallery keys are not paths', async () => {
    const r = await raw(srv.port, `/api/gallery/${enc('../secret.txt')}`, { method: 'POST' });
    assert.equal(r.status, 404);
  });
});

describe('loopback binding', () => {
  test('requests for other host names are refused (DNS rebinding)', async () => {
    const r = await raw(srv.port, '/api/runs', { headers: { host: 'evil.example:8080' } });
    assert.equal(r.status, 403);
    assert.match(r.json().error, /answers only on 127\.0\.0\.1/);
    assert.equal((await raw(srv.port, '/api/runs', { headers: { host: `localhost:${srv.port}` } })).status, 200);
  });
});

describe('static front-end', () => {
  test('serves index.html and assets', async () => {
    const r = await get('/');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'] as string, /text\/html/);
    const a = await get('/assets/app.js');
    assert.equal(a.status, 200);
    assert.match(a.headers['content-type'] as string, /javascript/);
    assert.equal((await get('/nope.js')).status, 404);
  });
});

describe('uploads', () => {
  test('a PNG is accepted and served back as the model sees it', async () => {
    const u = await upload(fx.images[1], 'photo-1.png');
    assert.match(u.id, /^u[0-9a-f]{20}$/);
    assert.equal(u.label, 'photo-1.png');
    assert.equal(u.width, 44);
    const png = await get(`/api/runs/vit-a/images/${u.id}/input.png`);
    assert.equal(png.status, 200);
    assert.equal(png.headers['content-type'], 'image/png');
    assert.equal(png.body.readUInt32BE(16), 32); // IHDR width: the model's 32 px crop
  });

  test('an oversized upload is 413 with the limit in the message', async () => {
    const r = await raw(srv.port, '/api/images', { method: 'POST', body: Buffer.alloc(LIMIT + 1, 7), headers: { 'content-type': 'image/png' } });
    assert.equal(r.status, 413);
    assert.match(r.json().error, /too large.*64 kB/);
  });

  test('an oversized chunked upload (no content-length) is 413 too', async () => {
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: srv.port, path: '/api/images', method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write(Buffer.alloc(16 * 1024, 1));
      req.end();
    });
    assert.equal(status, 413);
  });

  test('bytes that are not an image are 415 with a clear message', async () => {
    const r = await raw(srv.port, '/api/images', { method: 'POST', body: Buffer.from('this is not an image at all'), headers: { 'content-type': 'image/png' } });
    assert.equal(r.status, 415);
    assert.match(r.json().error, /not an image we can read: give a JPEG, PNG or WebP file/);
  });

  test('a truncated PNG is refused', async () => {
    const bytes = readFileSync(fx.images[0]);
    const r = await raw(srv.port, '/api/images', { method: 'POST', body: bytes.subarray(0, Math.floor(bytes.length / 2)) });
    assert.equal(r.status, 415);
    assert.match(r.json().error, /JPEG, PNG or WebP/);
  });

  test('a decompression bomb (81 megapixels in 106 bytes) is refused before decoding', async () => {
    const { crc32, deflateSync } = await import('node:zlib');
    const chunk = (type: string, data: Buffer) => {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(data.length);
      const td = Buffer.concat([Buffer.from(type), data]);
      const c = Buffer.alloc(4);
      c.writeUInt32BE(crc32(td));
      return Buffer.concat([len, td, c]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(9000, 0);
    ihdr.writeUInt32BE(9000, 4);
    ihdr[8] = 8; // 8-bit
    ihdr[9] = 2; // RGB
    const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(1 + 9000 * 3))), chunk('IEND', Buffer.alloc(0))]);
    const r = await raw(srv.port, '/api/images', { method: 'POST', body: png });
    assert.equal(r.status, 413);
    assert.match(r.json().error, /9000×9000 pixels; the limit is 40 megapixels/);
  });

  test('an empty upload is 400', async () => {
    const r = await raw(srv.port, '/api/images', { method: 'POST', body: Buffer.alloc(0) });
    assert.equal(r.status, 400);
    assert.match(r.json().error, /empty upload/);
  });

  test('unknown image ids are 404', async () => {
    const r = await get('/api/runs/vit-a/images/u000/maps?layer=0&head=0&mode=0');
    assert.equal(r.status, 404);
  });
});

describe('gallery', () => {
  test('lists --images and the run’s scan images; picking one returns an id', async () => {
    const r = await get('/api/gallery?run=vit-a');
    assert.equal(r.status, 200);
    const imgs = r.json().images as { key: string; label: string; source: string }[];
    assert.equal(imgs.length, 6); // the scan lists the same files as --images
    assert.ok(imgs.every((i) => /^[0-9a-f]{16}$/.test(i.key) && !('path' in i)));
    const p = await raw(srv.port, `/api/gallery/${imgs[2].key}?run=vit-a`, { method: 'POST' });
    assert.equal(p.status, 200);
    assert.equal(p.json().label, 'photo-2.png');
  });
});

describe('live computations', () => {
  test('maps: Q and K over the patch grid; the negative sign flips them', async () => {
    const u = await upload(fx.images[2]);
    const pos = (await get(`/api/runs/vit-a/images/${u.id}/maps?layer=1&head=0&mode=2`)).json();
    const neg = (await get(`/api/runs/vit-a/images/${u.id}/maps?layer=1&head=0&mode=2&sign=neg`)).json();
    assert.deepEqual(pos.grid, [8, 8]);
    assert.equal(pos.q.length, 64);
    assert.equal(pos.k.length, 64);
    for (let i = 0; i < 64; i++) assert.equal(neg.q[i], -pos.q[i]);
    assert.equal(pos.qmax, Math.max(...pos.q));
    assert.ok(Math.abs(pos.score - pos.qmax * pos.kmax) < 1e-12);
  });

  for (const run of ['vit-a', 'group/vit-b', 'beit']) {
    test(`decomposition adds up to the model's logits (${run})`, async () => {
      const u = await upload(fx.images[3]);
      for (const [l, h, patch] of [
        [0, 0, 0],
        [1, 2, 37],
        [2, 1, 63],
      ]) {
        const r = await get(`/api/runs/${enc(run)}/images/${u.id}/decomposition?layer=${l}&head=${h}&patch=${patch}&top=4`);
        assert.equal(r.status, 200, r.body.toString());
        const d = r.json();
        const T = d.tokens.count;
        assert.equal(T, 65);
        assert.equal(d.query.token, 1 + patch);
        assert.equal(d.parts.filter((p: { kind: string }) => p.kind === 'mode').length, 4);
        assert.ok(d.parts.some((p: { kind: string }) => p.kind === 'other_modes'));
        assert.ok(d.parts.some((p: { kind: string }) => p.kind === 'key_salience'));
        assert.equal(d.parts.some((p: { kind: string }) => p.kind === 'rel_pos_bias'), run === 'beit');
        for (let j = 0; j < T; j++) {
          const sum = d.parts.reduce((a: number, p: { values: number[] }) => a + p.values[j], 0);
          assert.ok(Math.abs(sum - d.model_logit[j]) < 1e-3, `${run} L${l} H${h} key ${j}: ${sum} vs ${d.model_logit[j]}`);
          assert.ok(Math.abs(d.residual[j] - (d.model_logit[j] - d.reconstructed[j])) < 1e-12);
        }
        assert.ok(d.max_abs_residual < 1e-4, `residual ${d.max_abs_residual}`);
        // softmax of the model's logits is the model's attention row.
        const m = Math.max(...d.model_logit);
        const e = d.model_logit.map((x: number) => Math.exp(x - m));
        const z = e.reduce((a: number, b: number) => a + b, 0);
        for (let j = 0; j < T; j++) assert.ok(Math.abs(e[j] / z - d.attention[j]) < 1e-5);
        assert.ok(d.softmax_max_abs_diff < 1e-5);
        // Top modes are ordered by |attention-weighted part|.
        const w = d.top_modes.map((n: number) => Math.abs(d.modes[n].contribution));
        for (let i = 1; i < w.length; i++) assert.ok(w[i - 1] >= w[i]);
      }
    });
  }

  test('image mode ranking: every mode’s contribution', async () => {
    const u = await upload(fx.images[4]);
    const r = await get(`/api/runs/vit-a/images/${u.id}/modes?layer=2&head=1`);
    assert.equal(r.status, 200);
    assert.equal(r.json().modes.length, 16);
    assert.ok(r.json().modes.every((m: { contribution: number }) => Number.isFinite(m.contribution)));
  });

  test('decomposition parameter errors', async () => {
    const u = await upload(fx.images[4]);
    assert.equal((await get(`/api/runs/vit-a/images/${u.id}/decomposition?layer=0&head=0&patch=64`)).status, 400);
    assert.equal((await get(`/api/runs/vit-a/images/${u.id}/decomposition?layer=0&head=0`)).status, 400);
    assert.equal((await get(`/api/runs/vit-a/images/${u.id}/maps?layer=0&head=0&mode=0&sign=up`)).status, 400);
  });

  test('anisotropy: live from the images, per layer', async () => {
    const r = await get('/api/runs/vit-a/anisotropy');
    assert.equal(r.status, 200);
    const b = r.json();
    assert.equal(b.available, true);
    assert.equal(b.source, 'live');
    assert.equal(b.images, 6);
    assert.equal(b.layers.length, 3);
    for (const l of b.layers) assert.ok(l.value > -1 && l.value < 1);
  });
});

describe('modes and scans', () => {
  test('mode detail with top images for both signs', async () => {
    const r = await get('/api/runs/vit-a/modes/2/1/0');
    assert.equal(r.status, 200);
    const b = r.json();
    assert.equal(b.has_scan, true);
    assert.equal(b.top.filter((t: { sign: number }) => t.sign === 1).length, 3);
    assert.equal(b.top.filter((t: { sign: number }) => t.sign === -1).length, 3);
    assert.ok(b.top.every((t: { label: string }) => /^photo-\d\.png$/.test(t.label)));
    assert.ok(!JSON.stringify(b).includes(fx.imagesDir), 'no server paths in the reply');
  });

  test('a top image: id plus live maps', async () => {
    const r = await get('/api/runs/vit-a/modes/2/1/0/top/neg/1');
    assert.equal(r.status, 200, r.body.toString());
    const b = r.json();
    assert.match(b.image.id, /^f[0-9a-f]{20}$/);
    assert.equal(b.sign, -1);
    assert.equal(b.q.length, 64);
    assert.equal((await get(`/api/runs/vit-a/images/${b.image.id}/input.png`)).status, 200);
    assert.equal((await get('/api/runs/vit-a/modes/2/1/0/top/neg/9')).status, 404);
    assert.equal((await get('/api/runs/vit-a/modes/2/1/0/top/sideways/0')).status, 400);
  });

  test('a run without a scan: empty top list, 404 for top images', async () => {
    const r = await get(`/api/runs/${enc('group/vit-b')}/modes/0/0/0`);
    assert.equal(r.json().has_scan, false);
    assert.deepEqual(r.json().top, []);
    assert.equal((await get(`/api/runs/${enc('group/vit-b')}/modes/0/0/0/top/pos/0`)).status, 404);
  });
});

describe('errors reach the client as messages', () => {
  test('a run whose model is gone: 422 naming the problem', async () => {
    const dir = tempDir('qkscope-serve-gone-');
    const runs = join(dir, 'runs');
    mkdirSync(join(runs, 'r'), { recursive: true });
    const s = JSON.parse(readFileSync(join(fx.runsDir, 'vit-a', 'summary.json'), 'utf8'));
    s.model.input = join(dir, 'no-such-model');
    writeFileSync(join(runs, 'r', 'summary.json'), JSON.stringify(s));
    for (const f of ['U.npy', 'V.npy', 'key_salience.npy']) writeFileSync(join(runs, 'r', f), readFileSync(join(fx.runsDir, 'vit-a', f)));
    const s2 = await startServer({ runsDir: runs, port: 0 });
    try {
      const u = await raw(s2.port, '/api/images', { method: 'POST', body: readFileSync(fx.images[0]) });
      const r = await raw(s2.port, `/api/runs/r/images/${u.json().id}/maps?layer=0&head=0&mode=0`);
      assert.equal(r.status, 422);
      assert.match(r.json().error, /cannot open its model/);
      // Weight-only views still work.
      assert.equal((await raw(s2.port, '/api/runs/r/heads/0/0')).status, 200);
      // No front-end build: a page saying how to build it.
      const home = await raw(s2.port, '/');
      assert.equal(home.status, 200);
    } finally {
      await s2.close();
    }
  });

  test('a run.db without the topk table: 422 with the expected schema', async () => {
    const dir = tempDir('qkscope-serve-db-');
    const runs = join(dir, 'runs');
    mkdirSync(join(runs, 'r'), { recursive: true });
    for (const f of ['summary.json', 'U.npy', 'V.npy', 'key_salience.npy']) writeFileSync(join(runs, 'r', f), readFileSync(join(fx.runsDir, 'vit-a', f)));
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(join(runs, 'r', 'run.db'));
    db.exec('CREATE TABLE other(x INTEGER)');
    db.close();
    const s2 = await startServer({ runsDir: runs, port: 0 });
    try {
      const r = await raw(s2.port, '/api/runs/r/modes/0/0/0');
      assert.equal(r.status, 422);
      assert.match(r.json().error, /topk\(layer, head, mode, sign, rank, image_path, score/);
    } finally {
      await s2.close();
    }
  });
});

describe('qkscope serve (CLI)', () => {
  test('binds to loopback, prints the URL, stops on SIGTERM', async () => {
    // Runs the command object directly, so the test does not depend on its registration.
    const mod = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'cli', 'serve.js')).href;
    const script = `import { serveCommand } from ${JSON.stringify(mod)};
await serveCommand().exitOverride().parseAsync([${JSON.stringify(fx.runsDir)}, '--port', '0'], { from: 'user' });`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (c) => (err += c));
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no URL printed: ${out} ${err}`)), 20000);
      child.stdout.on('data', (c) => {
        out += c;
        const m = /(http:\/\/\S+)/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(m[1]);
        }
      });
    });
    assert.match(out, /3 runs under/);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const r = await fetch(url + 'api/runs');
    assert.equal(r.status, 200);
    const code = await new Promise<number | null>((resolve) => {
      child.on('exit', (c) => resolve(c));
      child.kill('SIGTERM');
    });
    assert.equal(code, 0, err);
  });

  test('a missing RUNS_DIR is a one-line error', async () => {
    const mod = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'cli', 'serve.js')).href;
    const script = `import { serveCommand } from ${JSON.stringify(mod)};
try { await serveCommand().exitOverride().parseAsync(['/no/such/dir'], { from: 'user' }); } catch (e) { console.error(e.message); process.exit(2); }`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c) => (err += c));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 2);
    assert.match(err, /not a folder/);
  });
});
