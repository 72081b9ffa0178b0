/**
 * `figure modes` and the explorer's Mode view on the real ViT-Tiny (../shared): a scan of the 500
 * shared photos at layer 5 (top 8 per sign), then
 * - `qkscope figure modes RUN --layer 5 --head 1 --modes 0-5 --sign both --images 8` as a whole
 *   command, 3 rounds: wall time (target ≤ 3 s), PNG size (target ≤ 3 MB), peak RSS;
 * - `qkscope serve` in headless chromium: navigation from the Head view to a mode until its 16 top
 *   images are drawn, for three modes and a repeat visit (target ≤ 1.5 s, repeat instant).
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { load1, runCli, spread, type Spread } from './measure.js';

const SHARED = new URL('../../../shared/', import.meta.url).pathname;
const MODEL = join(SHARED, 'models', 'vit-tiny-patch16-224-augreg');
const PHOTOS = join(SHARED, 'images', 'imagenet-sample');
const LAYER = 5;

export interface FigureBenchResult {
  available: boolean;
  why?: string;
  figure?: { wall: Spread; pngMB: number; peakRssMB: number };
  serve?: { modeMs: number[]; repeatMs: number } | { unavailable: string };
  load: [number, number];
}

export async function benchFigure(): Promise<FigureBenchResult> {
  const l0 = load1();
  if (!existsSync(join(MODEL, 'model.safetensors')) || !existsSync(PHOTOS)) return { available: false, why: '../shared (real ViT-Tiny and photos) is not beside the checkout', load: [l0, load1()] };
  const root = mkdtempSync(join(tmpdir(), 'qkscope-bench-figure-'));
  try {
    const run = join(root, 'runs', 'vit-tiny');
    runCli(['scan', MODEL, PHOTOS, '--out', run, '--top', '8', '--layers', String(LAYER)]);
    const walls: number[] = [];
    let rss = 0;
    let png = 0;
    for (let r = 0; r < 3; r++) {
      const out = join(root, `fig-${r}.png`);
      const c = runCli(['figure', 'modes', run, '--layer', String(LAYER), '--head', '1', '--modes', '0-5', '--sign', 'both', '--images', '8', '--out', out]);
      walls.push(c.wallS);
      rss = Math.max(rss, c.peakRssMB);
      png = statSync(out).size / 2 ** 20;
    }
    const serve = await serveTiming(join(root, 'runs'));
    return { available: true, figure: { wall: spread(walls), pngMB: png, peakRssMB: rss }, serve, load: [l0, load1()] };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

async function serveTiming(runsDir: string): Promise<{ modeMs: number[]; repeatMs: number } | { unavailable: string }> {
  const chromiumPath = process.env.QKSCOPE_CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
  if (!chromiumPath) return { unavailable: 'chromium not installed' };
  const { chromium } = await import('playwright-core');
  const { startServer } = await import('../src/server/server.js');
  const srv = await startServer({ runsDir, port: 0, imagesDirs: [PHOTOS] });
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox', '--headless', '--disable-background-networking', '--no-first-run'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    page.setDefaultTimeout(120_000);
    await page.goto(`${srv.url}#/run/vit-tiny/head/${LAYER}/1`);
    await page.waitForSelector('#mode-table');
    await page.waitForTimeout(3000); // a reader looks at the head first; the server warms the layer
    const times: number[] = [];
    for (const mode of [3, 4, 5, 3]) {
      await page.evaluate(() => delete document.body.dataset.modeReadyMs);
      await page.evaluate((h) => (location.hash = h), `#/run/vit-tiny/mode/${LAYER}/1/${mode}`);
      await page.waitForFunction(() => document.body.dataset.modeReadyMs !== undefined);
      times.push(Number(await page.evaluate(() => document.body.dataset.modeReadyMs)));
      await page.evaluate((h) => (location.hash = h), `#/run/vit-tiny/head/${LAYER}/1`);
      await page.waitForSelector('#mode-table');
    }
    return { modeMs: times.slice(0, 3), repeatMs: times[3] };
  } finally {
    await browser.close();
    await srv.close();
  }
}
