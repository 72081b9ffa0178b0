#!/usr/bin/env node
// Screenshots of every `qkscope serve` view, to look at the pages:
//
//   npm run build && npm run build:web
//   node scripts/web-shots.mjs RUNS_DIR OUT_DIR [--images DIR] [--run ID]
//
// Starts the server in-process on a free port, drives chromium (QKSCOPE_CHROMIUM or
// /usr/bin/chromium) at 1280×800 and 1366×768, and writes OUT_DIR/<view>-<size>.png (the
// visible window) and OUT_DIR/<view>-<size>-full.png (the whole page).
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
const [runsDir, out] = args;
if (!runsDir || !out) {
  console.error('usage: node scripts/web-shots.mjs RUNS_DIR OUT_DIR [--images DIR] [--run ID]');
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const s = await startServer({ runsDir, port: 0, imagesDir });
const browser = await chromium.launch({
  executablePath: process.env.QKSCOPE_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--headless', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});
try {
  const runs = (await (await fetch(s.url + 'api/runs')).json()).runs;
  if (!runs.length) throw new Error(`no runs under ${runsDir}`);
  const run = runs.find((r) => r.id === runWanted) ?? runs.find((r) => r.has_scan) ?? runs[0];
  const L = Math.floor(run.dims.layers / 4);
  const enc = encodeURIComponent(run.id);
  for (const [w, h] of [
    [1280, 800],
    [1366, 768],
  ]) {
    const page = await browser.newPage({ viewport: { width: w, height: h } });
    page.on('pageerror', (e) => console.error('page error:', e.message));
    page.setDefaultTimeout(60000);
    const shot = async (name) => {
      await page.waitForTimeout(500);
      await page.screenshot({ path: join(out, `${name}-${w}x${h}.png`) });
      await page.screenshot({ path: join(out, `${name}-${w}x${h}-full.png`), fullPage: true });
    };
    await page.goto(s.url);
    await page.waitForSelector('[data-testid=models-chart]');
    await shot('models');
    await page.goto(`${s.url}#/run/${enc}/head/${L}/0`);
    await page.waitForSelector('#mode-table');
    await shot('head');
    await page.goto(`${s.url}#/run/${enc}/mode/${L}/0/0`);
    await page.waitForSelector('main .card');
    if (run.has_scan) await page.waitForSelector('.top-card.ready').catch(() => undefined);
    await shot('mode');
    if (run.has_scan && (await page.locator('.top-card.ready').count())) {
      await page.click('.top-card.ready >> nth=0');
    } else {
      await page.goto(`${s.url}#/run/${enc}/image?layer=${L}&head=0&mode=0`);
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
