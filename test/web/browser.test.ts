/**
 * Browser test of the `qkscope serve` front-end: Playwright (playwright-core) driving Debian's
 * chromium on a generated model, svd run and scan database. Opens every view, navigates
 * model → head → mode → image and back, uploads images (a good one and a bad one), clicks a
 * patch and checks that the shown decomposition adds up to the model's attention logits.
 * Screenshots of failing steps go to test-output/web/.
 *
 * Needs chromium (`apt-get install chromium`, or QKSCOPE_CHROMIUM=/path/to/chrome); skipped
 * without it. Builds the front-end (dist/web) with Vite when it is missing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { REPO_ROOT } from '../helpers/paths.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { makeServeFixture, type ServeFixture } from '../server/fixture.js';

const CHROMIUM = process.env.QKSCOPE_CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));
const SHOTS = join(REPO_ROOT, 'test-output', 'web');
const WEB = join(REPO_ROOT, 'dist', 'web');

let fx: ServeFixture;
let srv: RunningServer;
let browser: Browser;
let page: Page;
const problems: string[] = [];

before(async () => {
  if (!CHROMIUM) return;
  if (!existsSync(join(WEB, 'index.html'))) {
    const r = spawnSync(process.execPath, [join(REPO_ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', 'web'], { cwd: REPO_ROOT, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`vite build failed: ${r.stderr}`);
  }
  fx = await makeServeFixture();
  srv = await startServer({ runsDir: fx.runsDir, port: 0, imagesDir: fx.imagesDir, maxUploadBytes: 1 << 20 });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--headless', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-default-apps'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.setDefaultTimeout(30000);
});

after(async () => {
  await browser?.close();
  await srv?.close();
});

/** Runs a step; on failure saves a screenshot named after it, then fails. */
async function step(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    mkdirSync(SHOTS, { recursive: true });
    const file = join(SHOTS, `${name.replace(/[^\w-]+/g, '_')}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => undefined);
    writeFileSync(file.replace(/\.png$/, '.html'), await page.content().catch(() => ''));
    throw new Error(`${name}: ${(e as Error).message} (screenshot: ${file})`);
  }
}

const num = (s: string | null) => Number((s ?? '').trim().replace('−', '-'));

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
    assert.equal(await page.locator('.card.heat').count(), 2);
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
    await page.uncheck('#relative');
    await page.selectOption('#stat', 'weighted');
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
    await page.click('#mode-table tr[data-mode="0"] a.mode-link');
    await page.waitForSelector('.top-card.ready');
    assert.match(page.url(), /#\/run\/vit-a\/mode\/1\/2\/0$/);
    await page.waitForFunction(() => document.querySelectorAll('.top-card.ready').length === 6);
    assert.equal(await page.locator('.tops[data-sign=pos] .top-card').count(), 3);
    assert.equal(await page.locator('.tops[data-sign=neg] .top-card').count(), 3);
    assert.match(await page.locator('[data-testid=mode-cosine]').innerText(), /cosine/);
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
    await page.setInputFiles('#file', fx.images[4]);
    await page.waitForFunction(() => /photo-4\.png · 56×44/.test(document.getElementById('image-message')?.textContent ?? ''));
    await page.waitForSelector('[data-testid=query-map]');
    await page.waitForSelector('[data-testid=key-map]');
    assert.match(page.url(), /img=u[0-9a-f]+/);
    await page.waitForSelector('#image-modes svg');
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

  await step('looks: 1280×800 has no horizontal scroll', async () => {
    for (const hash of ['#/', '#/run/vit-a/head/0/0', '#/run/vit-a/mode/0/0/1']) {
      await page.goto(srv.url + hash);
      await page.waitForSelector('main .card');
      await page.waitForTimeout(200);
      const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(over <= 0, `${hash}: page wider than the window by ${over}px`);
    }
    await page.setViewportSize({ width: 1366, height: 768 });
    await page.goto(srv.url + '#/run/vit-a/image?layer=0&head=0&mode=0');
    await page.waitForSelector('#dropzone');
    const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(over <= 0, `image view at 1366×768 wider than the window by ${over}px`);
  });

  await step('unknown run shows a message', async () => {
    await page.goto(srv.url + '#/run/nope/head/0/0');
    await page.waitForSelector('.error');
    assert.match(await page.locator('.error').innerText(), /no run "nope"/);
  });

  assert.deepEqual(problems, [], 'no page errors or console errors');
});
