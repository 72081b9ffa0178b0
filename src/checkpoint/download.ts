/**
 * Resumable HTTP downloads for checkpoints: the hub's weight blobs (hub.ts) and release files
 * named by URL (the SimMIM and I-JEPA releases). Bytes go to `<dest>.incomplete`; a later run
 * asks for the rest with `Range: bytes=<have>-` (a server that ignores it, answering 200, gets
 * the file from the start again), and the file is renamed to `dest` only once complete (size
 * checked when the server told it), so an interrupted run never leaves a bad file under the
 * final name. Progress is reported in whole MB through a `Progress`.
 */
import { closeSync, existsSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from '../errors.js';
import type { Progress } from '../progress.js';
import { ensureDir } from '../io/fs.js';

export class NetworkError extends Error {}

async function get(url: string, init: RequestInit & { timeoutMs?: number }): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: init.timeoutMs ? AbortSignal.timeout(init.timeoutMs) : undefined });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new NetworkError(cause?.code ?? cause?.message ?? (e as Error).message);
  }
}

export interface RemoteSize {
  /** Bytes, or null when the server does not say. */
  size: number | null;
  /** The URL after redirects. */
  url: string;
}

/** HEAD request (redirects followed): the file's size, without downloading it. */
export async function remoteSize(url: string, opts: { headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<RemoteSize> {
  const res = await get(url, { method: 'HEAD', redirect: 'follow', headers: { 'accept-encoding': 'identity', ...(opts.headers ?? {}) }, timeoutMs: opts.timeoutMs ?? 15000 });
  if (!res.ok) throw new UserError(`${url}: HTTP ${res.status} to a HEAD request; check the URL (or the network)`);
  const n = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length') ?? NaN);
  return { size: Number.isFinite(n) && n > 0 ? n : null, url: res.url || url };
}

export interface DownloadOptions {
  /** Expected size in bytes (checked at the end); else the server's Content-Length / Content-Range. */
  size?: number | null;
  headers?: Record<string, string>;
  progress?: Progress;
  /** Progress label (default: the file name). */
  label?: string;
  /** Whose file it is, for messages (a repo id, a model name; default the URL). */
  owner?: string;
  /** The file's name in messages (default: dest's). */
  file?: string;
}

/**
 * Downloads `url` to `dest`, resuming `<dest>.incomplete` when it exists. Throws a UserError
 * (one line, "run again to resume") when the connection drops.
 */
export async function downloadResumable(url: string, dest: string, opts: DownloadOptions = {}): Promise<void> {
  ensureDir(dirname(dest));
  const tmp = `${dest}.incomplete`;
  const who = opts.owner ?? url;
  const file = opts.file ?? dest.split(/[\\/]/).pop()!;
  let have = existsSync(tmp) ? statSync(tmp).size : 0;
  const headers: Record<string, string> = { 'accept-encoding': 'identity', ...(opts.headers ?? {}) };
  if (have > 0) headers.range = `bytes=${have}-`;
  let res: Response;
  try {
    res = await get(url, { headers, redirect: 'follow' });
  } catch (e) {
    throw new UserError(`${who}: cannot connect to download ${file} (${(e as Error).message}); check the network and run again (${have ? `${mb(have)} MB kept, the download resumes` : 'nothing was written'})`);
  }
  if (res.status === 416 && have > 0 && opts.size && have >= opts.size) {
    // Everything was already there (interrupted between the last byte and the rename).
    await res.body?.cancel();
  } else {
    if (!res.ok || !res.body) throw new UserError(`${who}: downloading ${file} failed (HTTP ${res.status} from ${url}); try again later`);
    if (res.status !== 206) have = 0; // the server ignored the range: start over
    const range = /\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '');
    const length = Number(res.headers.get('content-length') ?? NaN);
    const total = opts.size ?? (range ? Number(range[1]) : Number.isFinite(length) ? have + length : null);
    const fd = openSync(tmp, have > 0 ? 'a' : 'w');
    const p = opts.progress;
    let got = have;
    let shownMb = Math.floor(have / 1e6);
    p?.start(opts.label ?? file, total ? Math.ceil(total / 1e6) : 0, { unit: 'MB', done: shownMb });
    try {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        let off = 0;
        while (off < value.length) off += writeSync(fd, value, off, value.length - off);
        got += value.length;
        const nowMb = Math.floor(got / 1e6);
        if (nowMb > shownMb) {
          p?.advance(nowMb - shownMb);
          shownMb = nowMb;
        }
      }
    } catch (e) {
      throw new UserError(`${who}: download of ${file} was interrupted at ${mb(got)} MB (${(e as Error).message}); run again to resume`);
    } finally {
      closeSync(fd);
      p?.end();
    }
    if (total !== null && got !== total) throw new UserError(`${who}: download of ${file} stopped at ${got} of ${total} bytes; run again to resume`);
  }
  renameSync(tmp, dest);
}

const mb = (n: number) => (n / 1e6).toFixed(1);
