/**
 * Opening checkpoint files safely: regular files only. A FIFO must never be opened for a
 * blocking read (it would hang until a writer appears), a directory must not reach `read()`
 * (EISDIR stack traces), and a device such as /dev/zero must not be read to its "end". Files are
 * opened with O_NONBLOCK (a no-op for regular files; for a FIFO it makes `open` return at once)
 * and checked with fstat on the open descriptor, so a path swapped between checks cannot slip by.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { UserError } from '../errors.js';

const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/** The one-line refusal for a path that exists but is not a regular file. */
export function notRegularError(path: string, st: Stats, what = 'weights file'): UserError {
  const hint = st.isDirectory() ? `give the ${what} inside it, or the model directory itself` : `give a regular ${what}`;
  return new UserError(`${path}: is ${kindOf(st)}, not a ${what}; ${hint}`);
}

function openError(path: string, e: unknown): UserError {
  return new UserError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? e}); check the path`);
}

/** Stats a path without opening it; null when it does not exist. */
export function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/** True when `path` exists and is a regular file (never opens it). */
export function isRegularFile(path: string): boolean {
  return statOrNull(path)?.isFile() ?? false;
}

/** Opens a regular file for reading (sync); anything else is a one-line UserError. */
export function openRegularSync(path: string, what?: string): { fd: number; size: number } {
  // Stat first: a FIFO is refused without ever being opened.
  const pre = statOrNull(path);
  if (pre && !pre.isFile()) throw notRegularError(path, pre, what);
  let fd: number;
  try {
    fd = openSync(path, OPEN_FLAGS);
  } catch (e) {
    throw openError(path, e);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw notRegularError(path, st, what);
  }
  return { fd, size: st.size };
}

/** Opens a regular file for positioned reads (async FileHandle); anything else is a one-line UserError. */
export async function openRegular(path: string, what?: string): Promise<{ fh: FileHandle; size: number }> {
  const pre = statOrNull(path);
  if (pre && !pre.isFile()) throw notRegularError(path, pre, what);
  let fh: FileHandle;
  try {
    fh = await open(path, OPEN_FLAGS);
  } catch (e) {
    throw openError(path, e);
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw notRegularError(path, st, what);
  }
  return { fh, size: st.size };
}

/**
 * Reads a whole small regular file (a config or an index JSON), refusing non-regular files and
 * files over `maxBytes` before reading them.
 */
export function readRegularFile(path: string, maxBytes: number, what: string): Buffer {
  const { fd, size } = openRegularSync(path, what);
  try {
    if (size > maxBytes) {
      throw new UserError(`${path}: is ${size} bytes, over the ${maxBytes}-byte limit for a ${what}; this is not a ${what}, check the file`);
    }
    const buf = Buffer.alloc(size);
    let got = 0;
    while (got < size) {
      const n = readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}
