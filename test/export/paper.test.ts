/**
 * `qkscope paper` against the local fake hub (test/checkpoint/fake-hub.ts: a real HTTP server
 * on 127.0.0.1) holding tiny stand-ins under the real ids, and a local release server for the
 * URL checkpoints: sizes shown before downloading, downloads into the HF cache, an interrupted
 * release download resumed with a Range request, svd on each, the grouped figure (golden) and
 * the site; then the same offline from the cache alone.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FakeHub, sha40, type FakeRepo } from '../checkpoint/fake-hub.js';
import { makeLayoutWeights, writeModel, type Layout } from '../fixtures/models.js';
import { CLI, tempDir } from '../helpers/paths.js';
import { assertGolden } from '../report/golden.js';
import { PAPER_MODELS, type PaperModel } from '../../src/jobs/paper-models.js';
import { paperFigure, planPaper, releaseCacheDir, runPaper, writePaper } from '../../src/jobs/paper.js';
import { layerCurve } from '../../src/analysis/compare.js';
import { UserError } from '../../src/errors.js';

const TWO = ['facebook/dino-vits16', 'openai/clip-vit-base-patch16'];
const LAYOUT: Record<string, Layout> = { 'facebook/dino-vits16': 'hf-vit', 'openai/clip-vit-base-patch16': 'hf-clip' };

let hub: FakeHub;
let home: string;
let env: NodeJS.ProcessEnv;
let release: Server;
let releaseUrl: string;
const releaseLog: { range: string | undefined }[] = [];
let releaseBytes: Buffer;
let cutNext = false;

function repoOf(layout: Layout, seed: number): FakeRepo {
  const dir = tempDir('qkscope-paper-model-');
  const m = writeModel(dir, layout, makeLayoutWeights(layout, { d: 32, heads: 2, layers: 3, patch: 4, image: 16, seed }));
  const files: Record<string, Buffer> = {};
  for (const f of m.files) files[f] = readFileSync(join(dir, f));
  const sha = sha40(`paper-${layout}-${seed}`);
  return { commits: { [sha]: files }, refs: { main: sha } };
}

before(async () => {
  hub = await new FakeHub(Object.fromEntries(TWO.map((id, i) => [id, repoOf(LAYOUT[id], 40 + i)]))).start();
  home = tempDir('qkscope-paper-home-');
  env = { ...process.env, HF_HOME: home, HF_HUB_CACHE: join(home, 'hub'), HF_ENDPOINT: hub.url, HF_HUB_OFFLINE: '' };
  delete env.HF_TOKEN;
  Object.assign(process.env, { HF_HOME: home, HF_HUB_CACHE: join(home, 'hub'), HF_ENDPOINT: hub.url, HF_HUB_OFFLINE: '' });
  // A release file (a SimMIM checkpoint) served with Range support; `cutNext` drops the connection halfway once.
  const dir = tempDir('qkscope-paper-release-');
  const m = writeModel(dir, 'simmim-pth', makeLayoutWeights('simmim-pth', { d: 32, heads: 2, layers: 2, patch: 4, image: 16, seed: 7 }));
  releaseBytes = readFileSync(m.path);
  release = createServer((req, res) => {
    const range = req.headers.range;
    releaseLog.push({ range });
    const from = range ? Number(/bytes=(\d+)-/.exec(range)![1]) : 0;
    const body = releaseBytes.subarray(from);
    const head = { 'content-length': body.length, 'accept-ranges': 'bytes', ...(range ? { 'content-range': `bytes ${from}-${releaseBytes.length - 1}/${releaseBytes.length}` } : {}) };
    res.writeHead(range ? 206 : 200, head);
    if (req.method === 'HEAD') return void res.end();
    if (cutNext) {
      cutNext = false;
      res.write(body.subarray(0, body.length >> 1));
      setTimeout(() => res.destroy(), 30);
      return;
    }
    res.end(body);
  });
  await new Promise<void>((r) => release.listen(0, '127.0.0.1', r));
  releaseUrl = `http://127.0.0.1:${(release.address() as AddressInfo).port}/simmim.pth`;
});

after(async () => {
  await hub?.stop();
  await new Promise<void>((r) => (release ? release.close(() => r()) : r()));
});

/** The CLI in a child process, asynchronously: the fake hub in this process must go on answering. */
function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [CLI, ...args], { env });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    c.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    c.on('error', reject);
    c.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

test('the documented list: the paper’s 17 checkpoints, each with its source and objective', () => {
  const ids = PAPER_MODELS.map((m) => m.id);
  for (const id of [
    'google/vit-base-patch16-224',
    'google/vit-base-patch32-384',
    'google/vit-large-patch16-224',
    'google/vit-large-patch32-384',
    'google/vit-huge-patch14-224-in21k',
    'facebook/deit-tiny-distilled-patch16-224',
    'facebook/deit-small-distilled-patch16-224',
    'facebook/deit-base-distilled-patch16-224',
    'openai/clip-vit-base-patch16',
    'openai/clip-vit-base-patch32',
    'openai/clip-vit-large-patch14',
    'facebook/dino-vits16',
    'facebook/dino-vitb16',
  ])
    assert.ok(ids.includes(id), id);
  assert.equal(new Set(ids).size, ids.length);
  assert.equal(PAPER_MODELS.filter((m) => /simmim/.test(m.id)).length, 2);
  assert.ok(PAPER_MODELS.some((m) => m.part === 'predictor' && m.source.kind === 'url'));
  assert.ok(PAPER_MODELS.some((m) => m.id.startsWith('facebook/ijepa') && m.source.kind === 'hub'));
  for (const m of PAPER_MODELS) {
    assert.ok(m.objective.length > 20 && /^https:\/\//.test(m.page), m.id);
    if (m.source.kind === 'url') assert.match(m.source.url, /^https:\/\//);
  }
});

test('paper --models (two ids): sizes first, downloads into the HF cache, svd, grouped figure, site', async () => {
  const out = join(tempDir('qkscope-paper-out-'), 'paper');
  const r = await cli(['paper', '--models', TWO.join(','), '--out', out, '--max-model-mb', '50', '--threads', '1']);
  assert.equal(r.status, 0, r.stderr + r.stdout);
  // The plan, with sizes from HEAD requests, comes before any download.
  assert.match(r.stdout, /self-supervised:\n\s+facebook\/dino-vits16\s+to download \([\d.]+ MB\)/);
  assert.match(r.stdout, /CLIP-like:\n\s+openai\/clip-vit-base-patch16\s+to download/);
  assert.match(r.stdout, /2 of 2 models available; to download: [\d.]+ MB/);
  assert.match(r.stdout, /paper: 2 models analysed; wrote .*compare\.svg.*site .*\(\d+ files/);
  const heads = hub.log.filter((l) => l.method === 'HEAD');
  assert.ok(heads.length >= 2);
  for (const f of ['compare.svg', 'compare.png', 'paper.json', 'site/index.html', 'site/data/index.js']) assert.ok(existsSync(join(out, f)), f);
  for (const id of TWO) {
    const s = JSON.parse(readFileSync(join(out, 'runs', id.replace('/', '--'), 'summary.json'), 'utf8'));
    assert.equal(s.model.input, id, 'svd records the hub id');
    assert.ok(existsSync(join(home, 'hub', `models--${id.replace('/', '--')}`)), `${id} in the HF cache`);
  }
  const p = JSON.parse(readFileSync(join(out, 'paper.json'), 'utf8'));
  assert.deepEqual(
    p.models.map((m: { id: string; group: string; status: string }) => [m.id, m.group, m.status]),
    [
      ['openai/clip-vit-base-patch16', 'clip', 'computed'],
      ['facebook/dino-vits16', 'self-supervised', 'computed'],
    ],
  );
  const svg = readFileSync(join(out, 'compare.svg'), 'utf8');
  assert.match(svg, />CLIP-like</);
  assert.match(svg, />self-supervised</);
  const site = readdirSync(join(out, 'site', 'data', 'runs'));
  assert.deepEqual(site.sort(), ['facebook--dino-vits16', 'openai--clip-vit-base-patch16']);
});

test('paper --offline: only the cache (no request), the same figure and site; --list says what is cached', async () => {
  // The cache from the previous test.
  const before = hub.log.length;
  const out = join(tempDir('qkscope-paper-off-'), 'paper');
  const r = await cli(['paper', '--models', TWO.join(','), '--offline', '--out', out, '--no-model', '--threads', '1']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(hub.log.length, before, 'no request to the hub');
  assert.match(r.stdout, /facebook\/dino-vits16\s+cached \([\d.]+ MB\)/);
  for (const f of ['compare.svg', 'compare.png', 'site/index.html']) assert.ok(existsSync(join(out, f)), f);
  const list = await cli(['paper', '--list']);
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, /supervised:\n\s+google\/vit-base-patch16-224\s+unavailable: not in the Hugging Face cache/);
  assert.match(list.stdout, /facebook\/dino-vits16\s+cached/);
  assert.match(list.stdout, /17 models, 2 cached/);
  assert.equal(hub.log.length, before, '--list asks no server');
  const none = await cli(['paper', '--models', 'google/vit-base-patch16-224', '--offline', '--out', join(out, 'x')]);
  assert.notEqual(none.status, 0);
  assert.match(none.stderr, /^qkscope: paper: none of the models is available offline/);
  const bad = await cli(['paper', '--models', 'nope/nothing', '--out', join(out, 'y')]);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  assert.match(bad.stderr, /--models nope\/nothing: not in the paper's list; `qkscope paper --list` shows the ids/);
});

test('a release checkpoint by URL: size by HEAD, an interrupted download resumes with a Range request', async () => {
  const entry: PaperModel = { id: 'simmim-test', group: 'self-supervised', objective: 'SimMIM stand-in for the test', source: { kind: 'url', url: releaseUrl, file: 'simmim-test.pth' }, page: 'https://example.org' };
  const plan = await planPaper({ list: [entry] });
  assert.equal(plan.entries[0].files[0].size, releaseBytes.length);
  assert.equal(plan.toDownload, releaseBytes.length);
  const dest = join(releaseCacheDir(), 'simmim-test.pth');
  const out = join(tempDir('qkscope-paper-rel-'), 'paper');
  cutNext = true;
  const first = await writePaper(runPaper(plan, { outDir: out }), out).catch((e) => e);
  assert.ok(first instanceof UserError, String(first));
  assert.match((first as Error).message, /none of the 1 models could be analysed .*(interrupted|stopped at).*run again to resume/);
  assert.ok(existsSync(`${dest}.incomplete`));
  const kept = statSync(`${dest}.incomplete`).size;
  assert.ok(kept > 0 && kept < releaseBytes.length);
  const w = await writePaper(runPaper(await planPaper({ list: [entry] }), { outDir: out }), out);
  assert.equal(releaseLog.at(-1)!.range, `bytes=${kept}-`, 'resumed where it stopped');
  assert.ok(readFileSync(dest).equals(releaseBytes), 'the file is whole');
  assert.ok(!existsSync(`${dest}.incomplete`));
  assert.equal(w.runs.length, 1);
  // A second run finds the svd run and the file: nothing downloaded or computed again.
  const n = releaseLog.length;
  const again = await writePaper(runPaper(await planPaper({ list: [entry] }), { outDir: out }), out);
  assert.equal(releaseLog.length, n);
  assert.equal(again.runs[0].reused, true);
});

test('grouped compare figure (golden): line style per training objective, colours per group, bands', () => {
  const curve = (id: string, L: number, shift: number) => ({
    ...layerCurve(
      {
        model: { id },
        dims: { width: 64 },
        layers: Array.from({ length: L }, (_, l) => ({
          layer: l,
          depth: L > 1 ? l / (L - 1) : 0,
          mean_weighted_cosine: 0.3 * Math.cos((l / (L - 1)) * 2.2) + shift,
          mean_plain_cosine: 0,
          heads: [{ sigma: [3, 2, 1] }, { sigma: [2, 2, 1] }],
        })),
      },
      'weighted',
    ),
  });
  const svg = paperFigure([
    { curve: curve('vit-b16', 12, 0), group: 'supervised' },
    { curve: curve('dino-s16', 12, 0.05), group: 'self-supervised' },
    { curve: curve('clip-b16', 12, -0.05), group: 'clip' },
    { curve: curve('deit-t16', 12, 0.1), group: 'supervised' },
  ]);
  assert.equal(paperFigure([{ curve: curve('vit-b16', 12, 0), group: 'supervised' }]).includes('>supervised<'), true);
  // Group order as the paper: supervised, CLIP-like, self-supervised; a dashed style for the second group.
  const at = (s: string) => svg.indexOf(`>${s}<`);
  assert.ok(at('supervised') < at('CLIP-like') && at('CLIP-like') < at('self-supervised'));
  assert.match(svg, /stroke-dasharray="7,3"/);
  assertGolden('compare-groups.svg', svg);
});
