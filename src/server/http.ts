/**
 * Small HTTP helpers for the `serve` command: JSON replies, errors with a status, bounded body
 * reading, and static files confined to one folder. node:http only, no framework.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createReadStream, realpathSync, statSync } from 'node:fs';
import { extname, join, resolve, sep } from 'node:path';

/** An error the API reports to the client as `{ error: message }` with this status. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v));
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(text);
}

export function sendError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, { error: message, status });
}

export function sendBytes(res: ServerResponse, type: string, body: Buffer, cache = 'no-store'): void {
  res.writeHead(200, { 'content-type': type, 'content-length': body.length, 'cache-control': cache, 'x-content-type-options': 'nosniff' });
  res.end(body);
}

/**
 * Reads a request body up to `limit` bytes. Bigger bodies are refused with 413 as soon as the
 * declared length or the bytes received pass the limit (the rest is not buffered).
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const declared = Number(req.headers['content-length']);
    const tooBig = () => new HttpError(413, `upload too large: the limit is ${formatBytes(limit)} (start serve with --max-upload-mb to change it)`);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume(); // drain so the client gets the reply
      reject(tooBig());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(tooBig());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolvePromise(Buffer.concat(chunks));
    });
    req.on('error', (e) => {
      if (!failed) reject(e);
    });
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
};

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
  const type = MIME[extname(target).toLowerCase()] ?? 'application/octet-stream';
  // Vite's hashed assets never change; everything else is revalidated.
  const cache = rel.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache';
  res.writeHead(200, { 'content-type': type, 'content-length': st.size, 'cache-control': cache, 'x-content-type-options': 'nosniff' });
  if (method === 'HEAD') {
    res.end();
    return true;
  }
  createReadStream(target).pipe(res);
  return true;
}
