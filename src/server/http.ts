/**
 * Small HTTP helpers for the `serve` command: JSON replies (with ETags), errors with a status,
 * bounded and timed body reading, and files confined to allowed folders by their real path
 * (symbolic links resolved). node:http only, no framework.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { createReadStream, realpathSync, statSync } from 'node:fs';
import { extname, join, resolve, sep } from 'node:path';
import type { ApiErrorBody } from '../api-types.js';

/** An error the API reports to the client as `{ error: message, status }`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The client went away (closed the connection mid-upload): nothing to answer, one log line at most. */
export class ClientGone extends Error {
  constructor(message = 'the client closed the connection') {
    super(message);
    this.name = 'ClientGone';
  }
}

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'x-content-type-options': 'nosniff' };

/** JSON text with non-finite numbers as null (JSON has no NaN). */
export function jsonText(body: unknown): string {
  return JSON.stringify(body, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v));
}

export interface CacheOptions {
  /** Strong validator of the reply; a matching If-None-Match is answered 304. */
  etag?: string;
  /** Cache-Control (default no-store). */
  cache?: string;
}

function notModified(req: IncomingMessage | undefined, res: ServerResponse, o: CacheOptions): boolean {
  if (!o.etag || !req) return false;
  const inm = req.headers['if-none-match'];
  if (!inm || !inm.split(',').some((t) => t.trim() === o.etag)) return false;
  res.writeHead(304, { etag: o.etag, 'cache-control': o.cache ?? 'no-cache' });
  res.end();
  return true;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, o: CacheOptions & { req?: IncomingMessage } = {}): void {
  if (notModified(o.req, res, o)) return;
  const text = jsonText(body);
  res.writeHead(status, {
    ...JSON_HEADERS,
    'content-length': Buffer.byteLength(text),
    'cache-control': o.cache ?? 'no-store',
    ...(o.etag ? { etag: o.etag } : {}),
  });
  res.end(text);
}

export function sendError(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body: ApiErrorBody = { error: message, status };
  const text = jsonText(body);
  res.writeHead(status, { ...JSON_HEADERS, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

export function sendBytes(res: ServerResponse, type: string, body: Buffer | Uint8Array, o: CacheOptions & { req?: IncomingMessage } = {}): void {
  if (notModified(o.req, res, o)) return;
  res.writeHead(200, {
    'content-type': type,
    'content-length': body.length,
    'cache-control': o.cache ?? 'no-store',
    'x-content-type-options': 'nosniff',
    ...(o.etag ? { etag: o.etag } : {}),
  });
  res.end(body);
}

/** A quoted strong ETag from the given parts. */
export function etagOf(...parts: (string | number)[]): string {
  return `"${createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 32)}"`;
}

export interface BodyLimits {
  /** Most bytes accepted. */
  maxBytes: number;
  /** Milliseconds the whole body may take to arrive (a slow client is answered 408). */
  timeoutMs: number;
}

/**
 * Reads a request body up to `maxBytes` within `timeoutMs`. Bigger bodies are refused with 413
 * as soon as the declared length or the bytes received pass the limit (the rest is not
 * buffered); a body still arriving after the time limit is 408; a client that disconnects
 * gives ClientGone.
 */
export function readBody(req: IncomingMessage, o: BodyLimits): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const tooBig = () => new HttpError(413, `upload too large: the limit is ${formatBytes(o.maxBytes)} (start serve with --max-upload-mb to change it)`);
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > o.maxBytes) {
      reject(tooBig());
      return;
    }
    // The client may have gone before the handler got here: its events are over.
    if (req.aborted || (req.socket?.destroyed && !req.complete)) {
      reject(new ClientGone());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (e: Error | null, body?: Buffer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      req.socket?.off('close', onAborted);
      chunks.length = 0;
      if (e) reject(e);
      else resolvePromise(body!);
    };
    const timer = setTimeout(() => finish(new HttpError(408, `upload too slow: the body did not arrive within ${Math.round(o.timeoutMs / 1000)} s`)), o.timeoutMs);
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > o.maxBytes) finish(tooBig());
      else chunks.push(c);
    };
    const onEnd = () => finish(null, Buffer.concat(chunks));
    const onError = () => finish(new ClientGone());
    const onAborted = () => {
      if (!req.complete) finish(new ClientGone());
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
    req.socket?.on('close', onAborted);
  });
}

export function formatBytes(n: number): string {
  if (n >= 1 << 20) return `${+(n / (1 << 20)).toFixed(1)} MB`;
  if (n >= 1 << 10) return `${+(n / (1 << 10)).toFixed(1)} kB`;
  return `${n} bytes`;
}

/** True when `child` is `root` or lies inside it (both absolute, already resolved). */
export function isInside(root: string, child: string): boolean {
  return child === root || child.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** The real path of `path` when it exists and lies (links resolved) inside one of `roots` (real paths), else null. */
export function realInside(roots: readonly string[], path: string): string | null {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return null;
  }
  return roots.some((r) => isInside(r, real)) ? real : null;
}

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
  '.npy': 'application/octet-stream',
};

export function mimeOf(name: string): string {
  return MIME[extname(name).toLowerCase()] ?? 'application/octet-stream';
}

/**
 * Serves `urlPath` from `root`, refusing anything that resolves (symlinks included) outside
 * it. Returns false when there is no such file (the front-end routes with '#', so there is no
 * fallback to index.html).
 */
export function serveStatic(res: ServerResponse, root: string, urlPath: string, method: string): boolean {
  let rel: string;
  try {
    rel = decodeURIComponent(urlPath);
  } catch {
    throw new HttpError(400, 'bad URL encoding');
  }
  if (rel.includes('\0')) throw new HttpError(400, 'bad path');
  const rootReal = realpathSync(root);
  let target = resolve(rootReal, '.' + (rel.startsWith('/') ? rel : '/' + rel));
  if (!isInside(rootReal, target)) throw new HttpError(403, 'path outside the web root refused');
  let st;
  try {
    st = statSync(target);
    if (st.isDirectory()) {
      target = join(target, 'index.html');
      st = statSync(target);
    }
    target = realpathSync(target);
  } catch {
    return false;
  }
  if (!isInside(rootReal, target)) throw new HttpError(403, 'path outside the web root refused');
  if (!st.isFile()) return false;
  // Vite's hashed assets never change; everything else is revalidated.
  const cache = rel.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache';
  sendFile(res, target, st.size, mimeOf(target), cache, method);
  return true;
}

/** Streams a file (already checked) as the reply. */
export function sendFile(res: ServerResponse, path: string, size: number, type: string, cache: string, method: string): void {
  res.writeHead(200, { 'content-type': type, 'content-length': size, 'cache-control': cache, 'x-content-type-options': 'nosniff' });
  if (method === 'HEAD') {
    res.end();
    return;
  }
  const s = createReadStream(path);
  s.on('error', () => res.destroy());
  s.pipe(res);
}
