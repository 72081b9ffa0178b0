// Golden-file comparison for figures (like Observable Plot's own tests): a run with
// UPDATE_GOLDEN=1 (or QKSCOPE_UPDATE_GOLDEN=1) writes test/output/NAME; every other run must
// match it byte for byte, and a missing golden fails (so a figure without one cannot pass). Compiled tests run from dist/test/report, so the repo root is found by walking up
// to the directory holding package.json.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('repo root (package.json) not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

export function goldenPath(name: string): string {
  return join(repoRoot(), 'test', 'output', name);
}

export function assertGolden(name: string, actual: string): void {
  const path = goldenPath(name);
  if (process.env.UPDATE_GOLDEN === '1' || process.env.QKSCOPE_UPDATE_GOLDEN === '1') {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, actual);
    console.log(`golden file written: ${path}`);
    return;
  }
  if (!existsSync(path)) {
    const actualPath = join(repoRoot(), 'test-output', name);
    mkdirSync(dirname(actualPath), { recursive: true });
    writeFileSync(actualPath, actual);
    assert.fail(`${name}: no golden file ${path}; look at ${actualPath} and, if it is right, rerun with UPDATE_GOLDEN=1 to keep it`);
  }
  const expected = readFileSync(path, 'utf8');
  if (actual !== expected) {
    const diffAt = [...actual].findIndex((c, i) => c !== expected[i]);
    const actualPath = join(repoRoot(), 'test-output', name);
    mkdirSync(dirname(actualPath), { recursive: true });
    writeFileSync(actualPath, actual);
    assert.fail(
      `${name} differs from the golden file ${path} (first difference at character ${diffAt}); ` +
        `actual output written to ${actualPath}. If the change is intended, rerun with QKSCOPE_UPDATE_GOLDEN=1.`,
    );
  }
}
