import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import assert from 'node:assert/strict';
import { UserError } from '../../src/errors.js';

/** A fresh temp directory, removed when the test file finishes. */
export function tempDir(tag = 'ckpt'): string {
  const d = mkdtempSync(join(tmpdir(), `qkscope-${tag}-`));
  after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Asserts that `fn` rejects with a one-line UserError whose message matches every pattern. */
export async function rejectsUser(fn: () => Promise<unknown>, ...patterns: (RegExp | string)[]): Promise<UserError> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof UserError, `expected a UserError, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  assert.ok(!err.message.includes('\n'), `message must be one line: ${err.message}`);
  for (const p of patterns) {
    if (typeof p === 'string') assert.ok(err.message.includes(p), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(p)}`);
    else assert.match(err.message, p);
  }
  return err;
}

export function ramp(n: number, scale = 1): number[] {
  return Array.from({ length: n }, (_, i) => (i - n / 2) * scale);
}
