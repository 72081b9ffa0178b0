/**
 * Browser test of an exported static site (`qkscope export`): Playwright (playwright-core)
 * driving Debian's chromium on the site opened from file:// and from a plain static HTTP server.
 * Every view renders, deep links work (serve's URLs), the mode view draws its stored top images,
 * and the Image view runs the model in the page (onnxruntime-web): its decomposition of a clicked
 * patch matches what `qkscope serve` computes in Node for the same image to 1e-4 relative, for a
 * ViT and for a BEiT (relative position bias). No page or console errors.
 *
 * Needs chromium (`apt-get install chromium`, or QKSCOPE_CHROMIUM=/path/to/chrome); skipped
 * without it. Builds dist/web-static with Vite when it is missing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM, ensureWebBuilt, launchBrowser, openPage, step as shotStep } from './browser-session.js';
import type * as A from '../../src/api-types.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { runExport, writeExport } from '../../src/jobs/export.js';
import { exportFixture, type ExportFixture } from '../export/fixture.js';

const SHOTS = join(REPO_ROOT, 'test-output', 'web-export');
const STATIC_APP = join(REPO_ROOT, 'dist', 'web-static');

let fx: ExportFixture;
let site: string;
let http: Server;
let httpUrl: string;
let srv: RunningServer;
let browser: Browser;
let page: Page;
const problems: string[] = [];

/** A plain static file server (what GitHub Pages is): files only, no API. */
function staticServer(root: string): Promise<Server> {
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json' };
  const s = createServer((req, res) => {
    const path = normalize(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    const file = path.endsWith('/') ? join(path, 'index.html') : path;
    if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) return void res.writeHead(404).end('not found');
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(s)));
}

before(async () => {
  if (!CHROMIUM) return;
  ensureWebBuilt(join(STATIC_APP, 'app.js'), ['-c', 'web/vite.static.config.ts']);
  fx = await exportFixture();
  site = join(tempDir('qkscope-site-web-'), 'site');
  await writeExport(await runExport([fx.runsDir], { modesPerHead: 2, imageSize: 48, threads: 1 }), site);
  http = await staticServer(site);
  httpUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}/`;
  srv = await startServer({ runsDir: fx.runsDir, port: 0, maxUploadBytes: 1 << 20, threads: 1 });
  browser = await launchBrowser();
  page = await openPage(browser, problems, { timeoutMs: 60000 });
});

after(async () => {
  await browser?.close();
  await srv?.close();
  await new Promise<void>((r) => (http ? http.close(() => r()) : r()));
});

const step = (name: string, fn: () => Promise<void>) => shotStep(page, SHOTS, name, fn);

/** The decomposition table as shown (full-precision values in data attributes). */
function readDecomposition() {
  return page.$eval('[data-testid=decomp-table]', (t) => ({
    key: Number(t.getAttribute('data-key')),
    rows: [...t.querySelectorAll('tbody tr[data-part]')].map((r) => ({ part: r.getAttribute('data-part')!, value: Number(r.getAttribute('data-value')) })),
    model: Number(t.querySelector('[data-testid=decomp-model]')!.getAttribute('data-value')),
  }));
}

/** max |a − b| / max |b|. */
function rel(a: number[], b: number[]): number {
  assert.equal(a.length, b.length);
  const scale = Math.max(1e-12, ...b.map(Math.abs));
  return Math.max(...a.map((x, i) => Math.abs(x - b[i]))) / scale;
}

/** The in-page decomposition of this image, patch and head, through the page's own data source. */
async function pageDecomposition(run: string, img: string, l: number, h: number, patch: number): Promise<A.Decomposition> {
  return page.evaluate(
    async ([run, img, l, h, patch]) => {
      const src = (globalThis as unknown as { qkscopeSource: { decomposition(...a: unknown[]): Promise<unknown> } }).qkscopeSource;
      return src.decomposition(run, img, l, h, patch, 5);
    },
    [run, img, l, h, patch] as const,
  ) as Promise<A.Decomposition>;
}

/** The same through `qkscope serve` (Node: onnxruntime-node, the server's code). */
async function nodeDecomposition(run: string, imagePath: string, l: number, h: number, patch: number): Promise<A.Decomposition> {
  const up = await fetch(`${srv.url}api/images`, { method: 'POST', body: readFileSync(imagePath), headers: { 'content-type': 'image/png', 'x-filename': 'x.png' } });
  const { id } = (await up.json()) as A.UploadResult;
  const r = await fetch(`${srv.url}api/runs/${encodeURIComponent(run)}/images/${id}/decomposition?layer=${l}&head=${h}&patch=${patch}&top=5`);
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()) as A.Decomposition;
}

function sameDecomposition(p: A.Decomposition, n: A.Decomposition, what: string): void {
  assert.deepEqual(p.top_modes, n.top_modes, `${what}: the same top modes`);
  assert.ok(rel(p.model_logit, n.model_logit) < 1e-4, `${what}: model logits ${rel(p.model_logit, n.model_logit)}`);
  assert.ok(rel(p.attention, n.attention) < 1e-4, `${what}: attention ${rel(p.attention, n.attention)}`);
  assert.ok(rel(p.reconstructed, n.reconstructed) < 1e-4, `${what}: reconstructed logits`);
  assert.deepEqual(
    p.parts.map((x) => x.kind),
    n.parts.map((x) => x.kind),
  );
  p.parts.forEach((part, i) => {
    const scale = Math.max(...n.model_logit.map(Math.abs));
    const err = Math.max(...part.values.map((v, j) => Math.abs(v - n.parts[i].values[j]))) / scale;
    assert.ok(err < 1e-4, `${what}: part ${part.kind}${part.mode ?? ''} differs by ${err} (relative to the logits)`);
  });
  assert.ok(p.max_abs_residual < 1e-3, `${what}: parts add up to the model's logits in the page (${p.max_abs_residual})`);
}

async function exercise(base: string, where: string): Promise<void> {
  await step(`${where}: models view`, async () => {
    await page.goto(base + '#/');
    await page.waitForSelector('[data-testid=models-chart]');
    assert.equal(await page.locator('.card.heat').count(), 2);
    assert.match(await page.locator('#models-chart').innerText(), /vit-a/);
  });
  await step(`${where}: models to head (click)`, async () => {
    await page.click('.card.heat[data-run="vit-a"] rect[data-layer="1"][data-head="2"]');
    await page.waitForSelector('#mode-table');
    assert.match(page.url(), /#\/run\/vit-a\/head\/1\/2$/);
    assert.equal(await page.locator('#mode-table tbody tr').count(), 16);
  });
  await step(`${where}: head to mode, stored top images drawn`, async () => {
    await page.click('#mode-table tr[data-mode="0"] a.mode-link');
    await page.waitForFunction(() => document.querySelectorAll('.top-card.ready').length === 6);
    assert.match(page.url(), /#\/run\/vit-a\/mode\/1\/2\/0$/);
  });
  await step(`${where}: deep links (serve's URLs)`, async () => {
    await page.goto(base + '#/run/group%2Fvit-b/head/1/0');
    await page.waitForSelector('#mode-table');
    await page.goto(base + '#/run/vit-a/mode/2/1/1');
    await page.waitForFunction(() => document.querySelectorAll('.top-card.ready').length === 6);
    await page.goto(base + '#/run/vit-a/mode/0/0/7');
    await page.waitForSelector('.error');
    assert.match(await page.locator('main').innerText(), /not in this site: it keeps modes 0\.\.1/);
  });
  await step(`${where}: image view runs the model in the page`, async () => {
    await page.goto(base + '#/run/vit-a/image?layer=1&head=2&mode=0');
    await page.waitForSelector('#dropzone');
    await page.setInputFiles('#file', fx.images[4]);
    await page.waitForSelector('[data-testid=query-map]', { timeout: 120000 });
    await page.waitForSelector('[data-testid=key-map]');
    const box = (await page.locator('#input-canvas').boundingBox())!;
    await page.mouse.click(box.x + box.width * (5.5 / 8), box.y + box.height * (2.5 / 8));
    await page.waitForSelector('[data-testid=decomp-table]');
    const shown = await readDecomposition();
    const sum = shown.rows.reduce((a, r) => a + r.value, 0);
    assert.ok(Math.abs(sum - shown.model) < 1e-3, `parts ${sum} vs logit ${shown.model}`);
    const img = new URL(page.url()).hash.match(/img=(\w+)/)![1];
    const p = await pageDecomposition('vit-a', img, 1, 2, 21);
    sameDecomposition(p, await nodeDecomposition('vit-a', fx.images[4], 1, 2, 21), 'vit-a L1 H2 patch 21');
    // A BEiT: relative position bias read back from the graph's outputs.
    await page.goto(base + '#/run/group%2Fvit-b/image?layer=1&head=1&mode=2');
    await page.waitForSelector('#dropzone');
    await page.setInputFiles('#file', fx.images[2]);
    await page.waitForSelector('[data-testid=query-map]', { timeout: 120000 });
    const img2 = new URL(page.url()).hash.match(/img=(\w+)/)![1];
    const q = await pageDecomposition('group/vit-b', img2, 1, 1, 30);
    assert.ok(q.parts.some((x) => x.kind === 'rel_pos_bias'));
    sameDecomposition(q, await nodeDecomposition('group/vit-b', fx.images[2], 1, 1, 30), 'vit-b L1 H1 patch 30');
  });
  await step(`${where}: a stored top image in the image view`, async () => {
    await page.goto(base + '#/run/vit-a/mode/1/2/0');
    await page.waitForFunction(() => document.querySelectorAll('.top-card.ready').length === 6);
    await page.click('.tops[data-sign=neg] .top-card.ready >> nth=0');
    await page.waitForSelector('[data-testid=query-map]', { timeout: 120000 });
    assert.match(page.url(), /#\/run\/vit-a\/image\?layer=1&head=2&mode=0&sign=neg&img=g[0-9a-f]+/);
  });
}

const skip = CHROMIUM ? false : 'chromium not installed (apt-get install chromium, or set QKSCOPE_CHROMIUM)';

test('exported site from file://: every view, deep links, the model in the page agrees with Node', { skip }, async () => {
  await exercise(pathToFileURL(join(site, 'index.html')).href, 'file');
  assert.deepEqual(problems.splice(0), [], 'no page errors or console errors');
});

test('exported site from a static HTTP server: the same', { skip }, async () => {
  await exercise(httpUrl, 'http');
  assert.deepEqual(problems.splice(0), [], 'no page errors or console errors');
});
