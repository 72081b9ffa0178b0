/**
 * Browser test of the `qkscope serve` front-end: Playwright (playwright-core) driving Debian's
 * chromium on a generated model, svd run and scan database. Opens every view, navigates
 * model → head → mode → image and back, uploads images (a good one and a bad one), clicks a
 * patch and checks that the shown decomposition adds up to the model's attention logits; checks
 * the conventions (0-based ranks, red positive / blue negative, the key map cyan), deep links,
 * text runs, error pages, the empty state, and that the Mode view asks for its maps in ONE
 * request. Screenshots of every view at 1366×768 and 1920×1080 go to test-output/web/ (and of
 * failing steps, named after the step).
 *
 * Needs chromium (`apt-get install chromium`, or QKSCOPE_CHROMIUM=/path/to/chrome); skipped
 * without it. Builds the front-end (dist/web) with Vite when it is missing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tempDir } from '../helpers/paths.js';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM, ensureWebBuilt, launchBrowser, openPage, step as shotStep } from './browser-session.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { makeServeFixture, type ServeFixture } from '../server/fixture.js';

const SHOTS = join(REPO_ROOT, 'test-output', 'web');
const WEB = join(REPO_ROOT, 'dist', 'web');

let fx: ServeFixture;
let srv: RunningServer;
let empty: RunningServer;
let browser: Browser;
let page: Page;
const problems: string[] = [];

before(async () => {
  if (!CHROMIUM) return;
  ensureWebBuilt(join(WEB, 'index.html'));
  fx = await makeServeFixture();
  // A text run (weights only): no image views.
  const text = join(fx.runsDir, 'text-run');
  mkdirSync(text);
  const summary = JSON.parse(readFileSync(join(fx.runsDir, 'vit-a', 'summary.json'), 'utf8'));
  summary.model = { ...summary.model, id: 'tiny-bert', modality: 'text', family: 'text-bert' };
  writeFileSync(join(text, 'summary.json'), JSON.stringify(summary));
  srv = await startServer({ runsDir: fx.runsDir, port: 0, imagesDirs: [fx.imagesDir], maxUploadBytes: 1 << 20 });
  const emptyDir = join(tempDir('qkscope-web-empty-'), 'runs');
  mkdirSync(emptyDir);
  empty = await startServer({ runsDir: emptyDir, port: 0 });
  browser = await launchBrowser();
  page = await openPage(browser, problems, { timeoutMs: 30000, ignore: /status of 4\d\d/ });
});

after(async () => {
  await browser?.close();
  await srv?.close();
  await empty?.close();
});

/** Saves a screenshot of the page as test-output/web/NAME-WxH.png (to look at). */
async function look(name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  const v = page.viewportSize()!;
  await page.waitForTimeout(150);
  await page.screenshot({ path: join(SHOTS, `${name}-${v.width}x${v.height}.png`), fullPage: true });
}

/** Red positive, blue negative: the fill of an element as [r, g, b]. */
function rgbOf(fill: string): [number, number, number] {
  const m = /rgb\((\d+), ?(\d+), ?(\d+)\)/.exec(fill);
  if (m) return [Number(m[1]), Number(m[2]), Number(m[3])];
  const hx = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(fill);
  if (hx) return [parseInt(hx[1], 16), parseInt(hx[2], 16), parseInt(hx[3], 16)];
  throw new Error(`not a colour: ${fill}`);
}

/** Runs a step; on failure saves a screenshot named after it, then fails. */
const step = (name: string, fn: () => Promise<void>) => shotStep(page, SHOTS, name, fn);

const num = (s: string | null) => Number((s ?? '').trim().replace('−', '-'));
const emptyUrl = () => empty.url;

/** The decomposition table as shown: displayed numbers and full-precision data values. */
async function readDecomposition() {
  return page.$eval('[data-testid=decomp-table]', (t) => {
    const rows = [...t.querySelectorAll('tbody tr[data-part]')].map((r) => ({
      part: r.getAttribute('data-part')!,
      shown: r.querySelector('td.part-value')!.textContent!,
      value: Number(r.getAttribute('data-value')),
    }));
    const cell = (id: string) => t.querySelector(`[data-testid=${id}]`)!;
    return {
      key: Number(t.getAttribute('data-key')),
      rows,
      sumShown: cell('decomp-sum').querySelectorAll('td')[1].textContent!,
      model: Number(cell('decomp-model').getAttribute('data-value')),
      modelShown: cell('decomp-model').querySelectorAll('td')[1].textContent!,
      residual: Number(cell('decomp-residual').getAttribute('data-value')),
    };
  });
}

test('serve front-end: every view, click-through, upload, decomposition', { skip: CHROMIUM ? false : 'chromium not installed (apt-get install chromium, or set QKSCOPE_CHROMIUM)' }, async () => {
  await step('models view', async () => {
    await page.goto(srv.url);
    await page.waitForSelector('[data-testid=models-chart]');
    assert.equal(await page.locator('.card.heat').count(), 3);
    const legend = await page.locator('#models-chart').innerText();
    assert.match(legend, /vit-a/);
    assert.match(legend, /group-vit-b/);
    // Axis labels on the main figure.
    const labels = await page.$$eval('#models-chart svg text', (ts) => ts.map((t) => t.textContent ?? '').join(' | '));
    assert.match(labels, /Normalised depth l\/\(L−1\)/);
    assert.match(labels, /cosine/);
    // Statistic toggle and the anisotropy-relative toggle.
    await page.selectOption('#stat', 'plain');
    await page.waitForFunction(() => [...document.querySelectorAll('#models-chart svg text')].some((t) => /plain mean cosine/.test(t.textContent ?? '')));
    await page.check('#relative');
    await page.waitForFunction(() => /relative to anisotropy/.test(document.getElementById('rel-status')?.textContent ?? ''));
    await page.waitForFunction(() => [...document.querySelectorAll('#models-chart svg text')].some((t) => /anisotropy/.test(t.textContent ?? '')));
    // Which baseline, from how many images (the fixture's runs store none: computed here).
    assert.match(await page.locator('#rel-status').innerText(), /vit-a: baseline from computed here from 6 images/);
    await page.uncheck('#relative');
    await page.selectOption('#stat', 'weighted');
    // The heatmap: red positive, blue negative (as the CLI).
    const cells = await page.$$eval('.card.heat[data-run="vit-a"] rect[data-layer]', (rs) => rs.map((r) => ({ fill: r.getAttribute('fill') ?? '', v: Number((r as unknown as { __data__: number }).__data__) })));
    assert.ok(cells.length === 9);
    const values = await (await fetch(`${srv.url}api/models`)).json();
    const hv = values.runs.find((r: { id: string }) => r.id === 'vit-a').heads.flat().map((x: { weighted: number }) => x.weighted) as number[];
    const iMax = hv.indexOf(Math.max(...hv));
    const iMin = hv.indexOf(Math.min(...hv));
    const [r1, , b1] = rgbOf(cells[iMax].fill);
    if (hv[iMax] > 0.05) assert.ok(r1 > b1, `largest cosine ${hv[iMax]} drawn ${cells[iMax].fill}`);
    const [r2, , b2] = rgbOf(cells[iMin].fill);
    if (hv[iMin] < -0.05) assert.ok(b2 > r2, `smallest cosine ${hv[iMin]} drawn ${cells[iMin].fill}`);
  });

  await step('models to head', async () => {
    await page.click('.card.heat[data-run="vit-a"] rect[data-layer="1"][data-head="2"]');
    await page.waitForSelector('#mode-table');
    assert.match(page.url(), /#\/run\/vit-a\/head\/1\/2$/);
    assert.equal(await page.locator('#mode-table tbody tr').count(), 16);
    assert.ok((await page.locator('main svg').count()) >= 3, 'spectrum, cosine and salience charts');
    assert.match(await page.locator('[data-testid=stat-weighted]').innerText(), /95 % chance/);
    assert.match(await page.locator('#crumbs').innerText(), /Models.*vit-a.*L1 H2/s);
  });

  await step('head to mode', async () => {
    // The head view labels mode 0 as σ₀ (0-based).
    assert.match(await page.locator('.stats').innerText(), /σ₀\/√dₕ/);
    assert.doesNotMatch(await page.locator('.stats').innerText(), /σ₁/);
    const asked: string[] = [];
    const onRequest = (r: { url(): string }) => asked.push(r.url());
    page.on('request', onRequest);
    await page.click('#mode-table tr[data-mode="0"] a.mode-link');
    await page.waitForSelector('.top-card.ready');
    assert.match(page.url(), /#\/run\/vit-a\/mode\/1\/2\/0$/);
    await page.waitForFunction(() => document.querySelectorAll('.top-card.ready').length === 6);
    page.off('request', onRequest);
    assert.equal(await page.locator('.tops[data-sign=pos] .top-card').count(), 3);
    assert.equal(await page.locator('.tops[data-sign=neg] .top-card').count(), 3);
    assert.match(await page.locator('[data-testid=mode-cosine]').innerText(), /cosine/);
    // One request for every card's maps and crops (one batched pass), none per card.
    assert.equal(asked.filter((u) => /\/modes\/1\/2\/0\/maps/.test(u)).length, 1, asked.join('\n'));
    assert.equal(asked.filter((u) => /\/top\/|thumb\.jpg|input\.png/.test(u)).length, 0, asked.join('\n'));
    // Ranks are 0-based, as in the CLI.
    assert.match(await page.locator('.tops[data-sign=pos] .top-card >> nth=0').innerText(), /^#0 /);
    assert.ok(Number(await page.evaluate(() => document.body.dataset.modeReadyMs)) > 0);
  });

  await step('mode to image and back', async () => {
    await page.click('.tops[data-sign=neg] .top-card.ready >> nth=0');
    await page.waitForSelector('[data-testid=query-map]');
    assert.match(page.url(), /#\/run\/vit-a\/image\?layer=1&head=2&mode=0&sign=neg&img=f[0-9a-f]+/);
    assert.equal(await page.inputValue('#sign'), '-1');
    await page.goBack();
    await page.waitForSelector('.top-card.ready');
    assert.match(page.url(), /\/mode\/1\/2\/0$/);
    await page.goBack();
    await page.waitForSelector('#mode-table');
    await page.goForward();
    await page.waitForSelector('.top-card');
    await page.click('a.btn.primary:has-text("Try on an image")');
    await page.waitForSelector('#no-image');
    assert.equal(await page.locator('#no-image').isVisible(), true);
  });

  await step('upload a bad image', async () => {
    await page.setInputFiles('#file', { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('certainly not a PNG') });
    await page.waitForSelector('#image-message .error');
    assert.match(await page.locator('#image-message').innerText(), /notes\.png: not an image we can read: give a JPEG, PNG or WebP file/);
    const big = Buffer.alloc((1 << 20) + 10, 1);
    await page.setInputFiles('#file', { name: 'huge.png', mimeType: 'image/png', buffer: big });
    await page.waitForFunction(() => /too large/.test(document.getElementById('image-message')?.textContent ?? ''));
  });

  await step('drop an image', async () => {
    const b64 = readFileSync(fx.images[5]).toString('base64');
    const dt = await page.evaluateHandle((data) => {
      const t = new DataTransfer();
      const bin = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      t.items.add(new File([bin], 'dropped.png', { type: 'image/png' }));
      return t;
    }, b64);
    await page.dispatchEvent('#dropzone', 'drop', { dataTransfer: dt });
    await page.waitForFunction(() => /dropped\.png · 60×46/.test(document.getElementById('image-message')?.textContent ?? ''));
    await page.waitForSelector('[data-testid=query-map]');
  });

  await step('upload an image', async () => {
    // Pick a gallery image first: after the upload the picker must not still show it.
    const first = await page.$$eval('#gallery option', (os) => os.map((o) => (o as HTMLOptionElement).value).filter(Boolean));
    await page.selectOption('#gallery', first[0]);
    await page.waitForFunction(() => /photo-0\.png/.test(document.getElementById('image-message')?.textContent ?? ''));
    await page.setInputFiles('#file', fx.images[4]);
    await page.waitForFunction(() => /photo-4\.png · 56×44/.test(document.getElementById('image-message')?.textContent ?? ''));
    await page.waitForSelector('[data-testid=query-map]');
    await page.waitForSelector('[data-testid=key-map]');
    assert.match(page.url(), /img=u[0-9a-f]+/);
    await page.waitForSelector('#image-modes svg');
    assert.equal(await page.inputValue('#gallery'), '');
    // The size stays on one line.
    assert.equal(await page.locator('#image-message .nowrap').innerText(), '56×44');
  });

  let first: Awaited<ReturnType<typeof readDecomposition>>;
  await step('click a patch: decomposition adds up', async () => {
    const box = (await page.locator('#input-canvas').boundingBox())!;
    // Patch (row 2, col 5) of the 8×8 grid.
    await page.mouse.click(box.x + box.width * (5.5 / 8), box.y + box.height * (2.5 / 8));
    await page.waitForSelector('[data-testid=decomp-table]');
    assert.match(page.url(), /patch=21/);
    first = await readDecomposition();
    assert.ok(first.rows.length >= 4);
    assert.ok(first.rows.some((r) => r.part === 'key_salience'));
    const shownSum = first.rows.reduce((a, r) => a + num(r.shown), 0);
    assert.ok(Math.abs(shownSum - num(first.modelShown)) < 1e-3, `shown parts ${shownSum} vs shown logit ${first.modelShown}`);
    const sum = first.rows.reduce((a, r) => a + r.value, 0);
    assert.ok(Math.abs(sum - first.model) < 1e-3, `parts ${sum} vs logit ${first.model}`);
    assert.ok(Math.abs(first.residual) < 1e-3);
    assert.ok(Math.abs(num(first.sumShown) - num(first.modelShown)) < 1e-3);
    // The logit shown is the model's own: compare with the API's, and its softmax with the attention row.
    const img = new URL(page.url()).hash.match(/img=(\w+)/)![1];
    const d = await (await fetch(`${srv.url}api/runs/vit-a/images/${img}/decomposition?layer=1&head=2&patch=21`)).json();
    assert.ok(Math.abs(d.model_logit[first.key] - first.model) < 1e-9);
    const m = Math.max(...d.model_logit);
    const z = d.model_logit.reduce((a: number, x: number) => a + Math.exp(x - m), 0);
    assert.ok(Math.abs(Math.exp(d.model_logit[first.key] - m) / z - d.attention[first.key]) < 1e-5);
    assert.match(await page.locator('[data-testid=max-residual]').innerText(), /max \|residual\|/);
  });

  await step('choose another key on the attention map', async () => {
    const target = first.key === 1 + 40 ? 41 : 40; // patch 40 (or 41)
    await page.click(`[data-testid=attention-map] rect[data-patch="${target}"]`);
    await page.waitForFunction((k) => document.querySelector('[data-testid=decomp-table]')?.getAttribute('data-key') === String(k), 1 + target);
    const d = await readDecomposition();
    const sum = d.rows.reduce((a, r) => a + num(r.shown), 0);
    assert.ok(Math.abs(sum - num(d.modelShown)) < 1e-3, `shown parts ${sum} vs ${d.modelShown}`);
    // The CLS token as the key.
    await page.click('.chips button[data-token="0"]');
    await page.waitForFunction(() => document.querySelector('[data-testid=decomp-table]')?.getAttribute('data-key') === '0');
  });

  await step('change layer, head and mode', async () => {
    await page.selectOption('#mode', '3');
    await page.waitForFunction(() => /u₃/.test(document.querySelector('[data-testid=query-map]')?.closest('.card')?.querySelector('h2')?.textContent ?? ''));
    assert.match(page.url(), /mode=3/);
    await page.selectOption('#layer', '2');
    await page.waitForFunction(() => /layer=2/.test(location.hash));
    await page.waitForSelector('[data-testid=decomp-table][data-layer="2"]');
    const d = await readDecomposition();
    const sum = d.rows.reduce((a, r) => a + r.value, 0);
    assert.ok(Math.abs(sum - d.model) < 1e-3);
    // Clicking a map cell picks the query patch too.
    await page.click('[data-testid=key-map] rect[data-patch="9"]');
    await page.waitForFunction(() => /patch=9/.test(location.hash));
    await page.waitForFunction(() => /query patch 9 /.test(document.body.textContent ?? ''));
  });

  await step('pick an image from the gallery', async () => {
    const options = await page.$$eval('#gallery option', (os) => os.map((o) => (o as HTMLOptionElement).value).filter(Boolean));
    assert.equal(options.length, 6);
    await page.selectOption('#gallery', options[1]);
    await page.waitForFunction(() => /photo-1\.png/.test(document.getElementById('image-message')?.textContent ?? ''));
    await page.waitForSelector('[data-testid=query-map]');
  });

  await step('deep link to an image, patch and key', async () => {
    const id = (await (await fetch(`${srv.url}api/runs/vit-a/modes/1/2/0/top/neg/0`)).json()).image.id;
    await page.goto(`${srv.url}#/run/vit-a/image?layer=1&head=2&mode=3&sign=neg&img=${id}&patch=9`);
    await page.waitForSelector('[data-testid=decomp-table][data-patch="9"]');
    assert.equal(await page.inputValue('#mode'), '3');
    assert.equal(await page.inputValue('#sign'), '-1');
    assert.equal(await page.inputValue('#gallery'), id.slice(1, 17));
    assert.match(await page.locator('#crumbs').innerText(), /Models.*vit-a.*L1 H2.*Mode 3.*Image/s);
  });

  await step('key map cyan, query map red', async () => {
    // The largest value of each signed map is drawn in its own colour.
    const top = async (id: string) =>
      page.$eval(`[data-testid=${id}]`, (el) => {
        const rects = [...el.querySelectorAll('g.main-cells rect')] as (SVGRectElement & { __data__: number })[];
        return rects.map((r) => r.getAttribute('fill') ?? '');
      });
    const img = new URL(page.url()).hash.match(/img=(\w+)/)![1];
    const m = await (await fetch(`${srv.url}api/runs/vit-a/images/${img}/maps?layer=1&head=2&mode=3&sign=neg`)).json();
    const qFill = (await top('query-map'))[m.q.indexOf(Math.max(...m.q))];
    const kFill = (await top('key-map'))[m.k.indexOf(Math.max(...m.k))];
    const [qr, , qb] = rgbOf(qFill);
    assert.ok(qr > qb + 40, `query max drawn ${qFill}`);
    const [kr, kg, kb] = rgbOf(kFill);
    assert.ok(kg > kr + 40 && kb > kr + 40, `key max drawn ${kFill} (cyan expected)`);
  });

  await step('a text run has no image view', async () => {
    await page.goto(`${srv.url}#/run/text-run/head/0/0`);
    await page.waitForSelector('#mode-table');
    assert.equal(await page.locator('a.btn.primary:has-text("Image view")').count(), 0);
    assert.equal(await page.locator('#mode-table a:has-text("on an image")').count(), 0);
    await page.goto(`${srv.url}#/run/text-run/image?layer=0&head=0&mode=0`);
    await page.waitForSelector('[data-testid=no-image-view]');
    assert.match(await page.locator('[data-testid=no-image-view]').innerText(), /tiny-bert is a text model/);
  });

  for (const [w, hgt] of [
    [1366, 768],
    [1920, 1080],
  ]) {
    await step(`looks at ${w}×${hgt}: every view, no horizontal scroll`, async () => {
      await page.setViewportSize({ width: w, height: hgt });
      const id = (await (await fetch(`${srv.url}api/runs/vit-a/modes/1/2/0/top/pos/0`)).json()).image.id;
      const views: [string, string, string][] = [
        ['models', '#/', '[data-testid=models-chart]'],
        ['head', '#/run/vit-a/head/1/2', '#mode-table'],
        ['mode', '#/run/vit-a/mode/1/2/0', '.top-card.ready'],
        ['image', `#/run/vit-a/image?layer=1&head=2&mode=0&img=${id}&patch=27`, '[data-testid=decomp-table]'],
        ['image-empty', '#/run/vit-a/image?layer=0&head=0&mode=0', '#dropzone'],
        ['error', '#/run/nope/head/0/0', '.error'],
      ];
      for (const [name, hash, ready] of views) {
        await page.goto(srv.url + hash);
        await page.waitForSelector(ready);
        if (name === 'mode') await page.waitForFunction(() => document.querySelectorAll('.top-card.ready').length === 6);
        const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(over <= 0, `${name}: page wider than the window by ${over}px`);
        await look(name);
      }
      // The query and key maps are large (they were ~150 px).
      await page.goto(srv.url + views[3][1]);
      await page.waitForSelector('[data-testid=key-map]');
      for (const t of ['query-map', 'key-map']) {
        const box = (await page.locator(`[data-testid=${t}] svg:last-of-type`).boundingBox())!;
        assert.ok(box.width >= 240, `${t} is ${box.width}px wide`);
      }
      const empty = await browser.newPage({ viewport: { width: w, height: hgt } });
      await empty.goto(emptyUrl());
      await empty.waitForSelector('[data-testid=empty-state]');
      assert.match(await empty.locator('main').innerText(), /qkscope svd MODEL --out .*\/NAME/);
      assert.match(await empty.locator('main').innerText(), /qkscope scan MODEL IMAGES --out/);
      mkdirSync(SHOTS, { recursive: true });
      await empty.screenshot({ path: join(SHOTS, `models-empty-${w}x${hgt}.png`), fullPage: true });
      await empty.close();
    });
  }

  await step('unknown run shows a message, with its own breadcrumb', async () => {
    await page.goto(srv.url + '#/run/vit-a/mode/1/2/0');
    await page.waitForSelector('.top-card');
    await page.evaluate(() => (location.hash = '#/run/nope/head/0/0'));
    await page.waitForSelector('.error');
    assert.match(await page.locator('.error').innerText(), /no run "nope"/);
    const crumbs = await page.locator('#crumbs').innerText();
    assert.match(crumbs, /nope/);
    assert.match(crumbs, /Error/);
    assert.doesNotMatch(crumbs, /Mode 0/);
  });

  assert.deepEqual(problems, [], 'no page errors or console errors');
});
