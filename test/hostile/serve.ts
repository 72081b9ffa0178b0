/**
 * Hostile clients against the real `qkscope serve` (a child process), in the hostile suite
 * (`npm run test:hostile`; fast relatives in test/server/hardening.test.ts):
 *
 * - 1 100 slow uploads held open while the server runs under `ulimit -n 1024`. Before: the
 *   server ran out of file descriptors and legitimate requests got ECONNRESET. Now: uploads past
 *   the cap are refused at once (503) and their connections closed, slow bodies time out, the
 *   connection count is capped below the descriptor limit, and reads keep being served.
 * - 200 aborted uploads. Before: a 5-line stack each. Now: nothing without --log, one line each
 *   with it.
 *
 * Run alone: `node --test dist/test/hostile/serve.js`.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from '../helpers/paths.js';

const PRLIMIT = ['/usr/bin/prlimit', '/bin/prlimit', '/usr/sbin/prlimit'].find((p) => existsSync(p));

interface Served {
  child: ChildProcess;
  port: number;
  stderr: () => string;
  stop: () => Promise<number | null>;
}

/** `qkscope serve` on a free port (under `ulimit -n nofile` when given). */
async function serve(runsDir: string, more: string[], nofile?: number): Promise<Served> {
  const node = [process.execPath, CLI, 'serve', runsDir, '--port', '0', ...more];
  const argv = nofile && PRLIMIT ? [PRLIMIT, `--nofile=${nofile}:${nofile}`, '--', ...node] : node;
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve did not start: ${out} ${err}`)), 30_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    child.on('exit', (c) => reject(new Error(`serve exited ${c}: ${err}`)));
  });
  return {
    child,
    port,
    stderr: () => err,
    stop: () =>
      new Promise((resolve) => {
        child.on('exit', (c) => resolve(c));
        child.kill('SIGTERM');
      }),
  };
}

/** A raw HTTP request; resolves with the status line's code (0 on a reset or close without reply). */
function rawRequest(port: number, text: string, timeoutMs = 10_000): Promise<number> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const t = setTimeout(() => {
      s.destroy();
      resolve(-1);
    }, timeoutMs);
    s.on('data', (d) => {
      got += d;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) {
        clearTimeout(t);
        s.destroy();
        resolve(Number(m[1]));
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(t);
      resolve(/^HTTP\/1\.1 (\d{3})/.exec(got) ? Number(/^HTTP\/1\.1 (\d{3})/.exec(got)![1]) : 0);
    });
    s.write(text);
  });
}

const GET = (path: string, port: number) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`;

describe('hostile clients: qkscope serve', { concurrency: 1 }, () => {
  test('1 100 slow uploads under ulimit -n 1024: excess refused at once, reads keep being served', { skip: PRLIMIT ? false : 'prlimit not installed', timeout: 180_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qkscope-hostile-serve-'));
    const runs = join(dir, 'runs');
    mkdirSync(runs);
    const s = await serve(runs, [], 1024);
    const sockets: Socket[] = [];
    const replies = new Map<number, number>();
    try {
      // Each holds its connection: headers and a first chunk of a 1 MB body, then a byte a second.
      for (let i = 0; i < 1100; i++) {
        const sock = connect(s.port, '127.0.0.1');
        sock.on('error', () => undefined);
        sock.on('data', (d) => {
          const m = /^HTTP\/1\.1 (\d{3})/.exec(d.toString());
          if (m) replies.set(Number(m[1]), (replies.get(Number(m[1])) ?? 0) + 1);
        });
        sock.write(`POST /api/images HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n` + 'x'.repeat(100));
        sockets.push(sock);
        if (i % 100 === 99) await new Promise((r) => setTimeout(r, 20));
      }
      const drip = setInterval(() => {
        for (const x of sockets) if (!x.destroyed) x.write('x');
      }, 1000);
      try {
        await new Promise((r) => setTimeout(r, 2000));
        // Legitimate reads while the flood holds its connections.
        const reads = await Promise.all(Array.from({ length: 20 }, () => rawRequest(s.port, GET('/api/runs', s.port))));
        assert.deepEqual(reads, Array(20).fill(200), `reads during the flood: ${reads.join(' ')}`);
        assert.ok((replies.get(503) ?? 0) >= 1000, `503 replies: ${JSON.stringify([...replies])}`);
        assert.ok(sockets.filter((x) => !x.destroyed).length < 1100, 'refused connections are closed');
      } finally {
        clearInterval(drip);
      }
      // The held uploads time out (30 s); the server is still up and answers.
      for (const x of sockets) x.destroy();
      assert.equal(await rawRequest(s.port, GET('/api', s.port)), 200);
      assert.doesNotMatch(s.stderr(), /\bat .*\.js:\d+|EMFILE|internal error/, s.stderr());
    } finally {
      for (const x of sockets) x.destroy();
      assert.equal(await s.stop(), 0);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('200 aborted uploads: nothing on stderr without --log, one line each with it', { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qkscope-hostile-serve-'));
    const runs = join(dir, 'runs');
    mkdirSync(runs);
    try {
      for (const log of [false, true]) {
        const s = await serve(runs, log ? ['--log'] : []);
        for (let round = 0; round < 4; round++) {
          const socks = Array.from({ length: 50 }, () => {
            const x = connect(s.port, '127.0.0.1');
            x.on('error', () => undefined);
            x.write(`POST /api/images HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nContent-Length: 100000\r\n\r\n` + 'x'.repeat(1000));
            return x;
          });
          await new Promise((r) => setTimeout(r, 300));
          for (const x of socks) x.destroy();
          await new Promise((r) => setTimeout(r, 300));
        }
        assert.equal(await rawRequest(s.port, GET('/api/runs', s.port)), 200);
        const err = s.stderr();
        assert.equal(await s.stop(), 0);
        const lines = err.split('\n').filter((l) => l && !/^(GET|POST) \S+ \d{3} \d+ms$/.test(l));
        assert.doesNotMatch(err, /\bat .*\.js:\d+/, 'no stack traces');
        if (!log) assert.deepEqual(lines, []);
        else {
          // 8 at a time are read (the rest are refused with 503 at once): one line per aborted read.
          assert.ok(lines.length >= 1 && lines.every((l) => /^POST \/api\/images: the client closed the connection$/.test(l)), lines.slice(0, 5).join('\n'));
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
