import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for huggingface.co's resolve endpoint, answering as the real hub does:
 * small files 200 with ETag (git blob id); LFS files (weights) 302 to a CDN URL on the same
 * server with X-Linked-Etag (sha256) and X-Linked-Size; X-Repo-Commit on every answer;
 * 404 + X-Error-Code EntryNotFound / RevisionNotFound, 401 + RepoNotFound.
 */
export interface FakeRepo {
  /** commit sha → files */
  commits: Record<string, Record<string, Buffer | string>>;
  /** branch or tag → commit sha */
  refs: Record<string, string>;
}

export interface Logged {
  method: string;
  url: string;
  auth?: string;
}

export class FakeHub {
  readonly log: Logged[] = [];
  /** CDN paths (sha256) to cut off halfway, to simulate an interrupted download. */
  readonly interrupt = new Set<string>();
  // Two servers, as the hub and its CDN are two hosts (the token must not reach the CDN).
  private servers: Server[];
  private blobs = new Map<string, Buffer>();
  url = '';
  cdnUrl = '';

  constructor(readonly repos: Record<string, FakeRepo>) {
    this.servers = [0, 1].map(() => createServer((req, res) => this.handle(req, res)));
  }

  async start(): Promise<this> {
    const [hub, cdn] = await Promise.all(
      this.servers.map(async (s) => {
        await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
        return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
      }),
    );
    this.url = hub;
    this.cdnUrl = cdn;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.servers) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.log.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization });
    const url = decodeURIComponent(req.url ?? '');
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url);
    if (cdn) {
      const body = this.blobs.get(cdn[1]);
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': body.length });
      if (this.interrupt.has(cdn[1])) {
        res.write(body.subarray(0, body.length >> 1));
        setTimeout(() => res.destroy(), 20);
        return;
      }
      return void res.end(body);
    }
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url);
    const repo = m && this.repos[m[1]];
    if (!m || !repo) return void res.writeHead(401, { 'x-error-code': 'RepoNotFound' }).end();
    const sha = repo.refs[m[2]] ?? (repo.commits[m[2]] ? m[2] : undefined);
    if (!sha) return void res.writeHead(404, { 'x-error-code': 'RevisionNotFound' }).end();
    const raw = repo.commits[sha][m[3]];
    if (raw === undefined) return void res.writeHead(404, { 'x-error-code': 'EntryNotFound', 'x-repo-commit': sha }).end();
    const body = Buffer.from(raw);
    if (/\.(safetensors|bin|pth)$/.test(m[3])) {
      const oid = createHash('sha256').update(body).digest('hex');
      this.blobs.set(oid, body);
      res.writeHead(302, {
        location: `${this.cdnUrl}/cdn/${oid}`,
        'x-repo-commit': sha,
        'x-linked-etag': `"${oid}"`,
        'x-linked-size': String(body.length),
        etag: '"not-this-one"',
      });
      return void res.end();
    }
    const gitOid = createHash('sha1').update(`blob ${body.length}\0`).update(body).digest('hex');
    res.writeHead(200, { 'x-repo-commit': sha, etag: `W/"${gitOid}"`, 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

export function sha40(seed: string): string {
  return createHash('sha1').update(seed).digest('hex');
}
