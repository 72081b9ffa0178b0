/**
 * Runs the real CLI (`node dist/src/cli/bin.js ...`) as a child process under limits, for the
 * hostile-input suite: a V8 heap cap (--max-old-space-size), an address-space cap through
 * `prlimit --as` when the machine has prlimit (util-linux), and a wall-clock timeout after which
 * the child is killed. The CLI reports its own peak RSS (QKSCOPE_REPORT_RSS=1 prints
 * `qkscope-maxrss-kb: N` on exit); that line is taken out of the stderr lines returned.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { CLI } from '../helpers/paths.js';

export interface CliLimits {
  /** Wall-clock limit; the child is killed (SIGKILL) past it. */
  timeoutMs: number;
  /** V8 old-space cap. */
  heapMb: number;
  /** Address-space cap (prlimit --as); V8 and native libraries need some virtual headroom above the heap. */
  addressSpaceMb: number;
}

export const DEFAULT_LIMITS: CliLimits = {
  timeoutMs: Number(process.env.QKSCOPE_HOSTILE_TIMEOUT_MS) || 30_000,
  heapMb: 1024,
  addressSpaceMb: Number(process.env.QKSCOPE_HOSTILE_AS_MB) || 4096,
};

export interface CliRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  /** stderr without the RSS report line, split into lines (no trailing empty line). */
  lines: string[];
  /** The child's peak RSS in kB as it reported it (null when it died before exiting normally). */
  maxRssKb: number | null;
  ms: number;
}

const PRLIMIT = ['/usr/bin/prlimit', '/bin/prlimit', '/usr/sbin/prlimit'].find((p) => existsSync(p));

/** The CLI under test: the build in this checkout, or QKSCOPE_HOSTILE_CLI (e.g. an older build, to measure "before"). */
export const CLI_UNDER_TEST = process.env.QKSCOPE_HOSTILE_CLI || CLI;

export function runCli(args: string[], limits: Partial<CliLimits> = {}, env: Record<string, string> = {}): Promise<CliRun> {
  const l = { ...DEFAULT_LIMITS, ...limits };
  const node = [process.execPath, `--max-old-space-size=${l.heapMb}`, CLI_UNDER_TEST, ...args];
  // prlimit execs the command: the child's pid is node's, so a kill reaches it.
  const argv = PRLIMIT ? [PRLIMIT, `--as=${l.addressSpaceMb * 2 ** 20}`, '--', ...node] : node;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { env: { ...process.env, QKSCOPE_REPORT_RSS: '1', NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const keep = (s: string, d: Buffer) => (s.length < 1 << 20 ? s + d.toString('utf8') : s);
    child.stdout.on('data', (d: Buffer) => (stdout = keep(stdout, d)));
    child.stderr.on('data', (d: Buffer) => (stderr = keep(stderr, d)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, l.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      let maxRssKb: number | null = null;
      const lines: string[] = [];
      for (const line of stderr.split('\n')) {
        const m = /^qkscope-maxrss-kb: (\d+)$/.exec(line);
        if (m) maxRssKb = Number(m[1]);
        else if (line !== '') lines.push(line);
      }
      resolve({ status, signal, timedOut, stdout, lines, maxRssKb, ms: performance.now() - started });
    });
  });
}

/** Whether the address-space cap is applied (reported with the results). */
export const HAVE_PRLIMIT = PRLIMIT !== undefined;
