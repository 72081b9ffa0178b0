/**
 * What the browser tests share: the Chromium to drive, the front end built when a test runs
 * without `npm run build`, a headless page that collects page errors and console errors, and
 * steps that leave a screenshot when they fail.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { REPO_ROOT } from '../helpers/paths.js';

/** QKSCOPE_CHROMIUM, else Debian's or another usual install; undefined where there is none (the tests skip). */
export const CHROMIUM = process.env.QKSCOPE_CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));

/** Builds the front end with vite (extra `args`, e.g. the static config) unless `marker` exists. */
export function ensureWebBuilt(marker: string, args: string[] = []): void {
  if (existsSync(marker)) return;
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', 'web', ...args], { cwd: REPO_ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`vite build failed: ${r.stderr}`);
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--headless', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-default-apps'],
  });
}

/**
 * A 1280 × 800 page whose uncaught errors and console errors (except those `ignore` matches)
 * are pushed to `problems`, for the test to assert empty.
 */
export async function openPage(browser: Browser, problems: string[], opts: { timeoutMs: number; ignore?: RegExp }): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !(opts.ignore && opts.ignore.test(m.text()))) problems.push(`console: ${m.text()}`);
  });
  page.setDefaultTimeout(opts.timeoutMs);
  return page;
}

/** Runs a step; on failure saves a screenshot (and the HTML) named after it in `shots`, then fails. */
export async function step(page: Page, shots: string, name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    mkdirSync(shots, { recursive: true });
    const file = join(shots, `${name.replace(/[^\w-]+/g, '_')}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => undefined);
    writeFileSync(file.replace(/\.png$/, '.html'), await page.content().catch(() => ''));
    throw new Error(`${name}: ${(e as Error).message} (screenshot: ${file})`);
  }
}
