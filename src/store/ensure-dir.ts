import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { UserError } from '../errors.js';

/**
 * `mkdir -p` that fails with a one-line UserError. Walks up by hand instead of using
 * `mkdirSync(..., { recursive: true })`, which spins forever on some paths (e.g. under /proc)
 * in Node 20.
 */
export function ensureDir(path: string): void {
  const abs = resolve(path);
  const missing: string[] = [];
  let p = abs;
  for (;;) {
    let st;
    try {
      st = statSync(p);
    } catch {
      st = undefined;
    }
    if (st) {
      if (!st.isDirectory()) throw new UserError(`${p}: exists and is not a directory; choose another output path`);
      break;
    }
    missing.push(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      throw new UserError(`${path}: cannot create directory ${dir} (${code ?? e}); check the path and its permissions`);
    }
  }
}
