/**
 * `qkscope serve`: one node:http server for the JSON API (/api/...) and the Vite-built
 * front-end (dist/web). Binds to loopback unless told otherwise.
 */
import { createServer, type Server } from 'node:http';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Api, type ApiOptions } from './api.js';
import { HttpError, sendError, serveStatic } from './http.js';

export interface ServeOptions extends Partial<ApiOptions> {
  runsDir: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Folder of the built front-end (default: dist/web of this package). */
  webRoot?: string;
  /** Log one line per request to this function. */
  log?: (line: string) => void;
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

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

/** The host name of a Host header, without port or IPv6 brackets. */
function hostName(h: string | undefined): string {
  if (!h) return '';
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']'));
  return h.replace(/:\d+$/, '').toLowerCase();
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

export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const api = new Api({
    runsDir: o.runsDir,
    maxUploadBytes: o.maxUploadBytes ?? DEFAULT_UPLOAD_BYTES,
    imagesDir: o.imagesDir,
    offline: o.offline,
    anisotropyImages: o.anisotropyImages,
  });
  const host = o.host ?? '127.0.0.1';
  const loopback = LOOPBACK.has(host);
  const webRoot = o.webRoot ?? defaultWebRoot();
  const hasWeb = existsSync(join(webRoot, 'index.html'));
  const server = createServer((req, res) => {
    const t0 = Date.now();
    res.on('finish', () => o.log?.(`${req.method} ${req.url} ${res.statusCode} ${Date.now() - t0}ms`));
    // Bound to loopback: answer only requests addressed to loopback names, so a web page
    // cannot reach the server through DNS rebinding.
    if (loopback && !LOOPBACK.has(hostName(req.headers.host))) {
      sendError(res, 403, `Host ${JSON.stringify(req.headers.host ?? '')} refused: this server answers only on 127.0.0.1 / localhost`);
      return;
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
      if (e instanceof HttpError) sendError(res, e.status, e.message);
      else {
        o.log?.(`error: ${e instanceof Error ? e.stack : String(e)}`);
        sendError(res, 500, `internal error: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
      }
    });
  });
  server.requestTimeout = 10 * 60_000;
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(o.port ?? 8080, host, () => {
      server.off('error', fail);
      ok();
    });
  });
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
