/**
 * One writer per run directory. Every command that writes into a run directory (scan, its
 * resume, merge, and every `write…` through RunDir) holds `DIR/.qkscope.lock` while it writes:
 *
 * - taking it is atomic: the lock is written to a private file and hard-linked to the lock name,
 *   which fails if any other process holds it (also on NFS, where O_EXCL is not reliable);
 * - a second writer refuses at once with one line naming the holder (pid, host, start time);
 * - a lock whose process is gone (same host: no such pid, or the pid now belongs to a process
 *   started later) is stale and taken over safely: it is renamed away first, and only the one
 *   process whose rename succeeded may take it;
 * - the lock is re-entrant within a process (scan writes its svd files through RunDir while it
 *   holds the directory) and released on exit, also on SIGINT/SIGTERM.
 */
import { linkSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { ensureDir, fsErrorMessage } from '../io/fs.js';

export const LOCK_NAME = '.qkscope.lock';

interface LockInfo {
  pid: number;
  host: string;
  started: string;
  /** Kernel start time of the process (Linux /proc/PID/stat field 22), to tell a reused pid. */
  pstart: string | null;
  command: string;
}

const held = new Map<string, { count: number; path: string }>();
let exitHook = false;

function procStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19] ?? null; // field 22 overall
  } catch {
    return null;
  }
}

function alive(info: LockInfo): boolean | 'unknown' {
  if (info.host !== hostname()) return 'unknown';
  try {
    process.kill(info.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    // EPERM: a process with that pid exists (another user's).
  }
  if (info.pstart) {
    const now = procStart(info.pid);
    if (now !== null && now !== info.pstart) return false; // pid reused by a younger process
  }
  return true;
}

function readLock(path: string): LockInfo | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as LockInfo;
  } catch {
    return null;
  }
}

function releaseAll(): void {
  for (const { path } of held.values()) rmSync(path, { force: true });
  held.clear();
}

function describe(info: LockInfo | null): string {
  if (!info) return 'another process (its lock file is unreadable)';
  return `process ${info.pid} on ${info.host} (${info.command}, started ${info.started})`;
}

/**
 * Takes the lock of `dir` (creating the directory). Returns the release function. Throws a
 * one-line UserError when another live process holds it.
 */
export function lockRunDir(dir: string, command: string): () => void {
  const abs = resolve(dir);
  const mine = held.get(abs);
  if (mine) {
    mine.count++;
    return once(() => release(abs));
  }
  ensureDir(abs);
  const path = join(abs, LOCK_NAME);
  const info: LockInfo = { pid: process.pid, host: hostname(), started: new Date().toISOString(), pstart: procStart(process.pid), command };
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  try {
    writeFileSync(tmp, JSON.stringify(info) + '\n');
  } catch (e) {
    const msg = fsErrorMessage(e, tmp);
    throw msg ? new UserError(msg) : e;
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(tmp, path);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          const msg = fsErrorMessage(e, path);
          throw msg ? new UserError(msg) : e;
        }
      }
      const other = readLock(path);
      const state = other ? alive(other) : 'unknown';
      if (state === false && attempt < 3) {
        // Stale: move it aside; of several processes doing this, exactly one rename succeeds.
        try {
          renameSync(path, `${path}.stale.${process.pid}`);
          rmSync(`${path}.stale.${process.pid}`, { force: true });
        } catch {
          /* someone else took it over first: try again */
        }
        continue;
      }
      throw new UserError(
        `${dir}: another qkscope writer holds this run directory: ${describe(other)}; wait for it to finish` +
          (state === 'unknown' ? ` (if it is gone, delete ${path})` : ', or choose another --out'),
      );
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  held.set(abs, { count: 1, path });
  if (!exitHook) {
    exitHook = true;
    process.on('exit', releaseAll);
  }
  return once(() => release(abs));
}

function release(abs: string): void {
  const h = held.get(abs);
  if (!h) return;
  if (--h.count > 0) return;
  held.delete(abs);
  const cur = readLock(h.path);
  if (cur && cur.pid === process.pid) rmSync(h.path, { force: true });
}

function once(f: () => void): () => void {
  let done = false;
  return () => {
    if (!done) {
      done = true;
      f();
    }
  };
}

/** Runs `body` holding the lock of `dir`. */
export async function withRunLock<T>(dir: string, command: string, body: () => Promise<T> | T): Promise<T> {
  const release = lockRunDir(dir, command);
  try {
    return await body();
  } finally {
    release();
  }
}
