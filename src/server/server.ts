/**
 * `qkscope serve`: one node:http server for the JSON API (/api/...) and the Vite-built
 * front-end (dist/web). Binds to loopback unless told otherwise.
 *
 * Limits, so that a hostile or broken client cannot take the server down:
 * - requests for other host names are refused when bound to loopback (DNS rebinding);
 * - state-changing requests (POST) are accepted only from the server's own pages: a request
 *   whose `Origin` is another site, or whose `Sec-Fetch-Site` says cross-site, is refused
 *   (requests without those headers, e.g. curl, are fine);
 * - at most `maxConcurrentUploads` bodies are received at once (more: 503 at once), each within
 *   `uploadTimeoutMs` (408), headers within 15 s; the number of connections is capped from the
 *   process's open-file limit (`ulimit -n`), so reads keep being served;
 * - a client that disconnects mid-request costs one log line with `--log`, and nothing without.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.js';
import { DEFAULT_MAX_PIXELS } from '../images/decode.js';
import { DEFAULT_BATCH } from '../runtime/batch-loop.js';
import { Api, type ApiOptions } from './api.js';
import { ClientGone, HttpError, sendError, serveStatic } from './http.js';

export interface ServeOptions extends Partial<ApiOptions> {
  runsDir: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Folder of the built front-end (default: dist/web of this package). */
  webRoot?: string;
  /** One line per request, and one per client that went away mid-request (`--log`). */
  log?: (line: string) => void;
  /** One line per internal error (always shown by the CLI). */
  warn?: (line: string) => void;
  /** Connections held at once (default: from the open-file limit). */
  maxConnections?: number;
}

export interface RunningServer {
  server: Server;
  api: Api;
  url: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

export const DEFAULT_UPLOAD_BYTES = 16 << 20;
export const DEFAULT_UPLOAD_TIMEOUT_MS = 30_000;
export const DEFAULT_CONCURRENT_UPLOADS = 8;
const HEADERS_TIMEOUT_MS = 15_000;

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

/** The host name of a Host header, without port or IPv6 brackets. */
function hostName(h: string | undefined): string {
  if (!h) return '';
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']'));
  return h.replace(/:\d+$/, '').toLowerCase();
}

/** The soft limit on open files (`ulimit -n`), from /proc on Linux; 1024 when unknown. */
export function openFileLimit(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m) return m[1] === 'unlimited' ? 1 << 20 : Number(m[1]);
  } catch {
    // not Linux
  }
  return 1024;
}

/** Connections the server may hold: most of the open-file limit, leaving room for model, database and image files. */
export function connectionBudget(limit = openFileLimit()): number {
  return Math.max(16, Math.min(limit - 128, Math.floor(limit * 0.75)));
}

/** dist/web beside the compiled dist/src/server/server.js. */
export function defaultWebRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return resolve(here, '..', '..', 'web');
}

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>qkscope</title>
<body style="font:16px system-ui;margin:3em">
<h1>qkscope serve</h1>
<p>The front-end is not built. Run <code>npm run build:web</code> in the qkscope checkout, then reload.
The JSON API is up: <a href="/api">/api</a>.</p>`;

/** Why a state-changing request is refused as cross-site, or null when it may go on. */
export function crossSiteReason(req: IncomingMessage): string | null {
  const site = req.headers['sec-fetch-site'];
  if (typeof site === 'string' && site !== 'same-origin' && site !== 'none') return `Sec-Fetch-Site: ${site}`;
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${req.headers.host ?? ''}`) return `Origin ${JSON.stringify(origin)}`;
  return null;
}

/** After an early reply (413, 503, 408) the request body is not read: close the connection once the reply is out. */
function closeAfterReply(req: IncomingMessage, res: ServerResponse, drainMs: number): void {
  res.shouldKeepAlive = false;
  // Read (and drop) what the client is still sending for a moment, so it sees the reply.
  req.resume();
  const t = setTimeout(() => req.socket.destroy(), drainMs);
  t.unref();
  res.on('close', () => clearTimeout(t));
}

export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const api = new Api({
    runsDir: o.runsDir,
    maxUploadBytes: o.maxUploadBytes ?? DEFAULT_UPLOAD_BYTES,
    imagesDirs: o.imagesDirs,
    allowImages: o.allowImages,
    allowScanImages: o.allowScanImages,
    offline: o.offline,
    anisotropyImages: o.anisotropyImages,
    maxConcurrentUploads: o.maxConcurrentUploads ?? DEFAULT_CONCURRENT_UPLOADS,
    uploadTimeoutMs: o.uploadTimeoutMs ?? DEFAULT_UPLOAD_TIMEOUT_MS,
    batch: o.batch ?? DEFAULT_BATCH,
    device: o.device,
    threads: o.threads,
    maxPixels: o.maxPixels ?? DEFAULT_MAX_PIXELS,
  });
  const host = o.host ?? '127.0.0.1';
  const loopback = LOOPBACK.has(host);
  const webRoot = o.webRoot ?? defaultWebRoot();
  const hasWeb = existsSync(join(webRoot, 'index.html'));
  const server = createServer({ headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: Math.max(HEADERS_TIMEOUT_MS, 2 * (o.uploadTimeoutMs ?? DEFAULT_UPLOAD_TIMEOUT_MS)), keepAliveTimeout: 5_000, connectionsCheckingInterval: 1_000 }, (req, res) => {
    const t0 = Date.now();
    res.on('finish', () => o.log?.(`${req.method} ${req.url} ${res.statusCode} ${Date.now() - t0}ms`));
    // Bound to loopback: answer only requests addressed to loopback names, so a web page
    // cannot reach the server through DNS rebinding.
    if (loopback && !LOOPBACK.has(hostName(req.headers.host))) {
      sendError(res, 403, `Host ${JSON.stringify(req.headers.host ?? '')} refused: this server answers only on 127.0.0.1 / localhost`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const why = crossSiteReason(req);
      if (why) {
        closeAfterReply(req, res, 2_000);
        sendError(res, 403, `cross-site request refused (${why}): only pages served by this server may change its state`);
        return;
      }
    }
    let url: URL;
    try {
      // Prefixing (not resolving against a base) keeps '//x' from being read as a host.
      url = new URL('http://localhost' + (req.url?.startsWith('/') ? req.url : '/' + (req.url ?? '')));
    } catch {
      sendError(res, 400, 'bad URL');
      return;
    }
    (async () => {
      if (await api.handle(req, res, url)) return;
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${req.method} is not allowed here`);
      if (!hasWeb) {
        if (url.pathname === '/' || url.pathname === '/index.html') {
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
          res.end(NOT_BUILT);
          return;
        }
        throw new HttpError(404, 'not found');
      }
      if (!serveStatic(res, webRoot, url.pathname, req.method)) throw new HttpError(404, `not found: ${url.pathname}`);
    })().catch((e: unknown) => {
      if (e instanceof ClientGone || req.socket.destroyed || res.destroyed) {
        o.log?.(`${req.method} ${req.url}: ${e instanceof ClientGone ? e.message : 'the client went away'}`);
        res.destroy();
        return;
      }
      if (e instanceof HttpError) {
        if (e.status === 413 || e.status === 503 || e.status === 408) closeAfterReply(req, res, e.status === 408 ? 0 : 5_000);
        sendError(res, e.status, e.message, e.status === 503 ? { 'retry-after': '1' } : {});
        return;
      }
      if (e instanceof UserError) {
        sendError(res, 422, e.message);
        return;
      }
      (o.warn ?? o.log)?.(`error: ${req.method} ${req.url}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
      sendError(res, 500, `internal error: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
    });
  });
  server.maxConnections = o.maxConnections ?? connectionBudget();
  // Errors of a connection (a reset, a malformed request) concern that client only.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // A client closing mid-request (reset, or the end of its stream) was logged by its request already.
    if (!['ECONNRESET', 'EPIPE', 'HPE_INVALID_EOF_STATE'].includes(err.code ?? '')) o.log?.(`client error: ${err.code ?? err.message}`);
    if (socket.writable && !socket.destroyed && err.code === 'ERR_HTTP_REQUEST_TIMEOUT') socket.end('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  try {
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(o.port ?? 8080, host, () => {
        server.off('error', fail);
        ok();
      });
    });
  } catch (e) {
    await api.close();
    throw e;
  }
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : (o.port ?? 8080);
  const shown = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    server,
    api,
    url: `http://${shown}:${port}/`,
    host,
    port,
    close: async () => {
      await new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      });
      await api.close();
    },
  };
}
