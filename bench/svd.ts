import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { VIT_B16, VIT_H14, writeSyntheticTimm, type VitSize } from './synthetic-checkpoint.js';

const CLI = fileURLToPath(new URL('../src/cli/bin.js', import.meta.url));

export interface SvdBenchRow {
  model: string;
  figures: boolean;
  wallS: number;
  peakRssMB: number;
  qkMB: number;
  fileMB: number;
  rssOverQk: number;
}

/** Runs the whole `qkscope svd` command in a child process: wall time and the child's peak RSS. */
function runOnce(dir: string, out: string, figures: boolean): { wallS: number; peakRssMB: number } {
  const args = [CLI, 'svd', dir, '--out', out, ...(figures ? [] : ['--no-figures'])];
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, QKSCOPE_REPORT_RSS: '1' } });
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`svd failed: ${r.stderr}`);
  const m = /qkscope-maxrss-kb: (\d+)/.exec(r.stderr);
  return { wallS, peakRssMB: m ? Number(m[1]) / 1024 : NaN };
}

export function benchSvd(sizes: VitSize[] = [VIT_B16, VIT_H14], repeats = 3): SvdBenchRow[] {
  const root = mkdtempSync(join(tmpdir(), 'qkscope-bench-svd-'));
  const rows: SvdBenchRow[] = [];
  try {
    for (const s of sizes) {
      const dir = join(root, s.arch);
      const { qkBytes, fileBytes } = writeSyntheticTimm(dir, s);
      for (const figures of [false, true]) {
        runOnce(dir, join(root, 'warm'), figures); // page cache + JIT-independent warm-up of the file
        const runs = Array.from({ length: repeats }, (_, i) => runOnce(dir, join(root, `out${i}`), figures));
        const best = runs.reduce((a, b) => (b.wallS < a.wallS ? b : a));
        const peak = Math.max(...runs.map((r) => r.peakRssMB));
        rows.push({ model: s.arch, figures, wallS: best.wallS, peakRssMB: peak, qkMB: qkBytes / 2 ** 20, fileMB: fileBytes / 2 ** 20, rssOverQk: peak / (qkBytes / 2 ** 20) });
      }
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    if (existsSync(root)) rmSync(root, { recursive: true, force: true });
  }
  return rows;
}
