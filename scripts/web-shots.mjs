#!/usr/bin/env node
// Screenshots of every `qkscope serve` view, to look at the pages:
//
//   npm run build && npm run build:web
//   node scripts/web-shots.mjs RUNS_DIR OUT_DIR [--images DIR] [--run ID] [--layer L]
//
// Starts the server in-process on a free port, drives chromium (QKSCOPE_CHROMIUM or
// /usr/bin/chromium) at 1366×768 and 1920×1080, and writes OUT_DIR/<view>-<size>.png (the
// visible window) and OUT_DIR/<view>-<size>-full.png (the whole page). Prints how long the
// Mode view took to show all its top images (navigation → every overlay drawn).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../dist/src/server/server.js';

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const imagesDir = opt('--images');
const runWanted = opt('--run');
const layerWanted = opt('--layer');
const [runsDir, out] = args;
if (!runsDir || !out) {
  console.error('usage: node scripts/web-shots.mjs RUNS_DIR OUT_DIR [--images DIR] [--run ID] [--layer L]');
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const s = await startServer({ runsDir, port: 0, imagesDirs: imagesDir ? [imagesDir] : [], warn: (l) => console.error(l) });
const browser = await chromium.launch({
  executablePath: process.env.QKSCOPE_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--headless', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});
try {
  const runs = (await (await fetch(s.url + 'api/runs')).json()).runs;
  if (!runs.length) throw new Error(`no runs under ${runsDir}`);
  const run = runs.find((r) => r.id === runWanted) ?? runs.find((r) => r.has_scan) ?? runs[0];
  const L = layerWanted !== undefined ? Number(layerWanted) : Math.floor(run.dims.layers / 2);
  const enc = encodeURIComponent(run.id);
  for (const [w, h] of [
    [1366, 768],
    [1920, 1080],
  ]) {
    const page = await browser.newPage({ viewport: { width: w, height: h } });
    page.on('pageerror', (e) => console.error('page error:', e.message));
    page.on('console', (m) => m.type() === 'error' && console.error('console:', m.text()));
    page.setDefaultTimeout(120000);
    const shot = async (name) => {
      await page.waitForTimeout(300);
      await page.screenshot({ path: join(out, `${name}-${w}x${h}.png`) });
      await page.screenshot({ path: join(out, `${name}-${w}x${h}-full.png`), fullPage: true });
    };
    await page.goto(s.url);
    await page.waitForSelector('[data-testid=models-chart]');
    await shot('models');
    if (await page.locator('#relative').count()) {
      await page.check('#relative');
      await page.waitForFunction(() => /relative to anisotropy|no baseline/.test(document.getElementById('rel-status')?.textContent ?? ''));
      await shot('models-relative');
      await page.uncheck('#relative');
    }
    await page.evaluate((hash) => (location.hash = hash), `#/run/${enc}/head/${L}/0`);
    await page.waitForSelector('#mode-table');
    await shot('head');
    await page.evaluate(() => delete document.body.dataset.modeReadyMs);
    await page.evaluate((hash) => (location.hash = hash), `#/run/${enc}/mode/${L}/0/1`);
    await page.waitForSelector('main .card');
    if (run.has_scan) {
      await page.waitForFunction(() => document.body.dataset.modeReadyMs !== undefined);
      console.log(`${w}x${h}: Mode view L${L} H0 M1, all ${await page.locator('.top-card.ready').count()} top images drawn ${await page.evaluate(() => document.body.dataset.modeReadyMs)} ms after navigation`);
    }
    await shot('mode');
    if (run.has_scan && (await page.locator('.top-card.ready').count())) {
      await page.click('.top-card.ready >> nth=0');
    } else {
      await page.evaluate((hash) => (location.hash = hash), `#/run/${enc}/image?layer=${L}&head=0&mode=1`);
      await page.waitForSelector('#gallery option:nth-child(2)', { state: 'attached' });
      const v = await page.$eval('#gallery option:nth-child(2)', (o) => o.value);
      await page.selectOption('#gallery', v);
    }
    await page.waitForSelector('[data-testid=query-map]');
    const box = await page.locator('#input-canvas').boundingBox();
    await page.mouse.click(box.x + box.width * 0.55, box.y + box.height * 0.45);
    await page.waitForSelector('[data-testid=decomp-table]');
    await shot('image');
    await page.close();
  }
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await s.close();
}
