// `npm run bench`: performance report (never a test). Each section measures ours against a
// reference measured in the same run on the same machine, and prints ratios.
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { benchSvd } from './svd.js';

const only = process.argv[2]; // e.g. `npm run bench -- svd`
const results: Record<string, unknown> = { machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version } };

if (!only || only === 'svd') {
  console.log('== svd: whole `qkscope svd` command, process start to files written (best of 3) ==');
  const rows = benchSvd();
  console.table(rows.map((r) => ({ model: r.model, figures: r.figures, 'wall s': r.wallS.toFixed(3), 'peak RSS MB': r.peakRssMB.toFixed(0), 'q/k MB': r.qkMB.toFixed(0), 'RSS / q/k': r.rssOverQk.toFixed(2), 'file MB': r.fileMB.toFixed(0) })));
  results.svd = rows;
}

writeFileSync('bench-results.json', JSON.stringify(results, null, 1) + '\n');
console.log('wrote bench-results.json');
