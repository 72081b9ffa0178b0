import { Command, Option } from 'commander';
import { UserError } from '../errors.js';
import { openRun, parseSign } from '../store/scan-run.js';
import { runTop } from '../jobs/top.js';

interface TopFlags {
  layer: number;
  head: number;
  mode: number;
  sign: string;
  json?: boolean;
}

function nonNegInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new UserError(`${flag} ${v}: expected a 0-based index`);
    return n;
  };
}

export function topCommand(): Command {
  return new Command('top')
    .description('print the top images of one mode of a scan, with their scores')
    .argument('<run>', 'scan run directory (or its run.db)')
    .addOption(new Option('--layer <l>', '0-based layer').argParser(nonNegInt('--layer')).makeOptionMandatory())
    .addOption(new Option('--head <h>', '0-based head').argParser(nonNegInt('--head')).makeOptionMandatory())
    .addOption(new Option('--mode <m>', '0-based mode (0 = largest σ)').argParser(nonNegInt('--mode')).makeOptionMandatory())
    .option('--sign <s>', '+ (u, v), - (−u, −v) or both', 'both')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExample:\n  qkscope top runs/vit-b16-scan --layer 3 --head 5 --mode 0 --sign +\n')
    .action((run: string, flags: TopFlags) => {
      const r = openRun(run);
      try {
        const t = runTop(r, { layer: flags.layer, head: flags.head, mode: flags.mode, sign: parseSign(flags.sign) });
        if (flags.json) {
          process.stdout.write(JSON.stringify(t, null, 1) + '\n');
          return;
        }
        const rel = t.relative_cosine === null ? '' : ` (relative ${t.relative_cosine.toFixed(3)})`;
        process.stdout.write(
          `L${t.layer} H${t.head} M${t.mode}: cosine ${t.cosine.toFixed(3)}${rel}, σ ${t.sigma.toPrecision(4)}; ` +
            `${t.images.done} images scanned${t.status === 'complete' ? '' : ' so far (scan not complete)'}; indices 0-based, tokens as patch index (row, col)\n`,
        );
        const cols = t.patch_grid[1];
        const tok = (x: number) => `${x} (${Math.floor(x / cols)},${x % cols})`;
        for (const l of t.lists) {
          const neg = l.sign === '-' ? '−' : '';
          process.stdout.write(`\nsign ${l.sign}  (score = max ${neg}Q × max ${neg}K)\n`);
          if (l.entries.length === 0) {
            process.stdout.write('  (no images yet)\n');
            continue;
          }
          const rows = [['rank', 'score', 'qmax', 'kmax', 'q_token', 'k_token', 'id', 'image']];
          for (const e of l.entries) rows.push([String(e.rank), e.score.toPrecision(6), e.qmax.toPrecision(5), e.kmax.toPrecision(5), tok(e.q_token), tok(e.k_token), String(e.image_id), e.path]);
          const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
          for (const row of rows) process.stdout.write('  ' + row.map((x, c) => (c === row.length - 1 ? x : c < 4 ? x.padStart(widths[c]) : x.padEnd(widths[c]))).join('  ') + '\n');
        }
      } finally {
        r.db.close();
      }
    });
}
