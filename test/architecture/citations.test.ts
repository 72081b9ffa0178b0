/**
 * The project is self-contained in what it cites: nothing in the repository points at a file
 * outside it (the specification it started from lives beside the checkout, not in a user's
 * clone), and every `docs/method.md §N` cited exists in docs/method.md.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/paths.js';

const TEXT = /\.(ts|mjs|js|md|html|css|json|py|sh)$/;

function trackedText(): string[] {
  const out = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], { cwd: REPO_ROOT, encoding: 'utf8' });
  return out.split('\n').filter((f) => f && TEXT.test(f) && !f.startsWith('node_modules/') && f !== 'package-lock.json' && f !== 'test/architecture/citations.test.ts');
}

test('nothing in the repository cites a file outside it', () => {
  const bad: string[] = [];
  for (const f of trackedText()) {
    let s: string;
    try {
      s = readFileSync(join(REPO_ROOT, f), 'utf8');
    } catch {
      continue; // deleted in the working tree
    }
    s.split('\n').forEach((line, i) => {
      if (/METHOD\.md|shared\/docs|seed-summary/.test(line)) bad.push(`${f}:${i + 1}: ${line.trim().slice(0, 120)}`);
    });
  }
  assert.deepEqual(bad, []);
});

test('every docs/method.md § cited exists', () => {
  const method = readFileSync(join(REPO_ROOT, 'docs', 'method.md'), 'utf8');
  const sections = new Set([...method.matchAll(/^##+ (\d+(?:\.\d+)?)\. /gm)].map((m) => m[1]));
  assert.ok(sections.has('1') && sections.has('9'), 'docs/method.md has numbered sections 1..9');
  const missing: string[] = [];
  for (const f of trackedText()) {
    let s: string;
    try {
      s = readFileSync(join(REPO_ROOT, f), 'utf8');
    } catch {
      continue;
    }
    for (const m of s.matchAll(/docs\/method\.md §(\d+(?:\.\d+)?)(?:[–-](\d+))?/g)) {
      for (const n of [m[1], m[2]].filter(Boolean)) if (!sections.has(n!)) missing.push(`${f}: §${n}`);
    }
  }
  assert.deepEqual(missing, []);
});
