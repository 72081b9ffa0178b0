/**
 * The Mode view on the real ViT-Tiny (../shared; skipped where it or chromium is absent): a scan
 * of 40 real photos (top 8 per sign: 16 top images a mode), then, in the browser, navigation
 * from the Head view to a mode until all 16 overlays are drawn. Prints the time (the target is
 * ≤ 1.5 s on an idle machine); asserts what makes it fast: ONE request for every card's maps and
 * crops, no request per card, and an instant repeat visit (the page's cache).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { CHROMIUM, ensureWebBuilt, launchBrowser } from './browser-session.js';
import { CLI, HAVE_SHARED, REAL_IMAGES, REAL_VIT_TINY, REPO_ROOT, tempDir } from '../helpers/paths.js';
import { startServer, type RunningServer } from '../../src/server/server.js';

const skip = !HAVE_SHARED ? '../shared (real ViT-Tiny and photos) is not beside the checkout' : !CHROMIUM ? 'chromium not installed' : false;
const LAYER = 5;

let srv: RunningServer;
let browser: Browser;

before(async () => {
  if (skip) return;
  ensureWebBuilt(join(REPO_ROOT, 'dist', 'web', 'index.html'));
  const root = tempDir('qkscope-mode-timing-');
  const photos = readdirSync(REAL_IMAGES)
    .filter((f) => /\.jpe?g$/i.test(f))
    .sort()
    .slice(0, 40)
    .map((f) => join(REAL_IMAGES, f));
  const list = join(root, 'list.txt');
  writeFileSync(list, photos.join('\n') + '\n');
  const r = spawnSync(process.execPath, [CLI, 'scan', REAL_VIT_TINY, list, '--out', join(root, 'runs', 'vit-tiny'), '--top', '8', '--layers', String(LAYER), '--batch', '8'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  srv = await startServer({ runsDir: join(root, 'runs'), port: 0, imagesDirs: [REAL_IMAGES] });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.close();
});

test('real ViT-Tiny: the Mode view draws its 16 top images from one request', { skip, timeout: 300_000 }, async (t) => {
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  page.setDefaultTimeout(120_000);
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`${srv.url}#/run/vit-tiny/head/${LAYER}/1`);
  await page.waitForSelector('#mode-table');
  // The Head view has the server build the runtime of this block; give it the time a reader takes.
  await page.waitForTimeout(3000);
  const times: number[] = [];
  for (const mode of [3, 4, 3]) {
    const asked: string[] = [];
    const onRequest = (r: { url(): string }) => asked.push(r.url());
    page.on('request', onRequest);
    await page.evaluate(() => delete document.body.dataset.modeReadyMs);
    await page.evaluate((h) => (location.hash = h), `#/run/vit-tiny/mode/${LAYER}/1/${mode}`);
    await page.waitForFunction(() => document.body.dataset.modeReadyMs !== undefined);
    page.off('request', onRequest);
    assert.equal(await page.locator('.top-card.ready').count(), 16);
    const ms = Number(await page.evaluate(() => document.body.dataset.modeReadyMs));
    times.push(ms);
    t.diagnostic(`L${LAYER} H1 M${mode}: all 16 top images drawn ${ms} ms after navigation (${asked.filter((u) => /\/api\//.test(u)).length} API requests)`);
    assert.ok(asked.filter((u) => /\/maps\?/.test(u)).length <= 1);
    assert.equal(asked.filter((u) => /thumb\.jpg|input\.png|\/top\//.test(u)).length, 0, asked.join('\n'));
    // Back to the head, as a reader would.
    await page.evaluate((h) => (location.hash = h), `#/run/vit-tiny/head/${LAYER}/1`);
    await page.waitForSelector('#mode-table');
  }
  // The repeat visit draws from the page's cache.
  assert.ok(times[2] < times[0], `repeat visit ${times[2]} ms, first ${times[0]} ms`);
  assert.deepEqual(problems, []);
  await page.close();
});
