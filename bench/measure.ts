/**
 * What the bench sections share: running a command as a user does (a child process, timed from
 * spawn to exit, with its peak RSS), the spread of repeated runs, the machine's load, and the
 * numpy references (Debian's numpy for /usr/bin/python3; the pyenv python on PATH has none).
 */
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../src/cli/bin.js', import.meta.url));
export const PYTHON = '/usr/bin/python3';

export interface CommandRun {
  /** Spawn to exit, seconds. */
  wallS: number;
  /** The child's own peak RSS (QKSCOPE_REPORT_RSS), MB. */
  peakRssMB: number;
  stdout: string;
}

/** Runs `qkscope <args>` in a child process. */
export function runCli(args: string[]): CommandRun {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20, env: { ...process.env, QKSCOPE_REPORT_RSS: '1' } });
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`qkscope ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  const m = /qkscope-maxrss-kb: (\d+)/.exec(r.stderr);
  return { wallS, peakRssMB: m ? Number(m[1]) / 1024 : NaN, stdout: r.stdout };
}

export interface Spread {
  runs: number[];
  best: number;
  median: number;
  worst: number;
}

/** Best, median and worst of repeated measurements: the smallest is best for times, the largest for rates (`higher`). */
export function spread(xs: number[], higher = false): Spread {
  const s = [...xs].sort((a, b) => (higher ? b - a : a - b));
  return { runs: xs, best: s[0], median: s[Math.floor(s.length / 2)], worst: s[s.length - 1] };
}

/** "1.23 s (1.20–1.31)": best of the runs, then the range. */
export function showSpread(s: Spread, digits = 2, unit = 's'): string {
  return `${s.best.toFixed(digits)} ${unit} (${s.best.toFixed(digits)}–${s.worst.toFixed(digits)})`;
}

/** The 1-minute load average now (2 cores here: above ~2 the timings are inflated). */
export function load1(): number {
  return loadavg()[0];
}

/** Why the numpy references cannot run here, or null when `/usr/bin/python3 -c "import numpy"` works. */
export function numpyMissing(): string | null {
  const r = spawnSync(PYTHON, ['-c', 'import numpy'], { encoding: 'utf8' });
  if (r.error) return `${PYTHON} not found (${(r.error as NodeJS.ErrnoException).code})`;
  if (r.status !== 0) return `${PYTHON} has no numpy (${r.stderr.trim().split('\n').pop()})`;
  return null;
}

/** Runs a Python script (source text) with /usr/bin/python3 and parses the JSON it prints last. */
export function python<T>(source: string, args: string[], env: Record<string, string> = {}): T {
  const r = spawnSync(PYTHON, ['-c', source, ...args], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20, env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`python reference failed (${r.status}): ${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as T;
}

/** Python lines that name the BLAS/LAPACK libraries this numpy process has loaded (from /proc/self/maps). */
export const PY_BLAS_NAMES = `
def blas_names():
    import os
    libs = set()
    try:
        for line in open('/proc/self/maps'):
            p = line.split()[-1]
            if p.startswith('/') and any(k in os.path.basename(p).lower() for k in ('blas', 'lapack', 'mkl', 'blis')):
                libs.add(os.path.realpath(p))
    except OSError:
        pass
    return sorted(libs)
`;
