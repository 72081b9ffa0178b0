import { mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
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

const FS_CAUSES: Record<string, string> = {
  ENOSPC: 'the disk is full; free some space or choose another location',
  EDQUOT: 'the disk quota is exhausted; free some space or choose another location',
  EACCES: 'permission denied; check the permissions or choose another location',
  EPERM: 'operation not permitted; check the permissions or choose another location',
  EROFS: 'the file system is read-only; choose another location',
  EISDIR: 'is a directory, not a file',
  ENOTDIR: 'a part of the path is not a directory',
  ENOENT: 'no such file or directory',
  EMFILE: 'too many open files; raise `ulimit -n` or run fewer jobs at once',
  EIO: 'input/output error from the disk',
};

/** One line for a file-system error (ENOSPC, EDQUOT, EACCES, ...) naming the path and the cause; null for others. */
export function fsErrorMessage(e: unknown, path: string): string | null {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (!code || !FS_CAUSES[code]) return null;
  return `${path}: ${FS_CAUSES[code]} (${code})`;
}

/** Runs `fn`; a file-system error becomes a one-line UserError naming `path`. */
export function withFsErrors<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const msg = fsErrorMessage(e, path);
    if (msg) throw new UserError(msg);
    throw e;
  }
}

/**
 * Writes a file so that readers see the old content or the new, never a half-written one:
 * `path.partial` is written and renamed over `path`. A failure (disk full) removes the partial
 * file and throws a one-line UserError.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.partial`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    const msg = fsErrorMessage(e, path);
    if (msg) throw new UserError(msg);
    throw e;
  }
}
