import { Command, Option } from 'commander';
import { UserError } from '../errors.js';
import { checkMode, modeInfo, openRun, parseSign, topList, type RankedImage } from '../store/scan-run.js';

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
        checkMode(r, flags.layer, flags.head, flags.mode);
        const s = parseSign(flags.sign);
        const signs: (1 | -1)[] = s === 'both' ? [1, -1] : [s];
        const info = modeInfo(r, flags.layer, flags.head, flags.mode);
        const prog = r.db.prepare('SELECT total, done, skipped FROM progress').get() as { total: number; done: number; skipped: number };
        const [, cols] = r.meta.patch_grid;
        const lists = signs.map((sign) => ({ sign, entries: topList(r, flags.layer, flags.head, flags.mode, sign) }));
        if (flags.json) {
          const out = {
            run: r.dir,
            layer: flags.layer,
            head: flags.head,
            mode: flags.mode,
            index_base: 0,
            sigma: info.sigma,
            cosine: info.cosine,
            anisotropy: info.anisotropy,
            relative_cosine: info.anisotropy === null ? null : info.cosine - info.anisotropy,
            embedding: r.meta.embedding,
            status: r.meta.status,
            images: prog,
            patch_grid: r.meta.patch_grid,
            lists: lists.map((l) => ({
              sign: l.sign > 0 ? '+' : '-',
              entries: l.entries.map((e: RankedImage) => ({
                rank: e.rank,
                score: e.score,
                qmax: e.qmax,
                kmax: e.kmax,
                q_token: e.qToken,
                k_token: e.kToken,
                q_mean: e.qMean,
                k_mean: e.kMean,
                q_top5: e.qTop5,
                k_top5: e.kTop5,
                image_id: e.id,
                path: e.path,
              })),
            })),
          };
          process.stdout.write(JSON.stringify(out, null, 1) + '\n');
          return;
        }
        const rel = info.anisotropy === null ? '' : ` (relative ${(info.cosine - info.anisotropy).toFixed(3)})`;
        process.stdout.write(
          `L${flags.layer} H${flags.head} M${flags.mode}: cosine ${info.cosine.toFixed(3)}${rel}, σ ${info.sigma.toPrecision(4)}; ` +
            `${prog.done} images scanned${r.meta.status === 'complete' ? '' : ' so far (scan not complete)'}; indices 0-based, tokens as patch index (row, col)\n`,
        );
        const tok = (t: number) => `${t} (${Math.floor(t / cols)},${t % cols})`;
        for (const l of lists) {
          process.stdout.write(`\nsign ${l.sign > 0 ? '+' : '-'}  (score = max ${l.sign > 0 ? '' : '−'}Q × max ${l.sign > 0 ? '' : '−'}K)\n`);
          const rows = [['rank', 'score', 'qmax', 'kmax', 'q_token', 'k_token', 'id', 'image']];
          for (const e of l.entries) rows.push([String(e.rank), e.score.toPrecision(6), e.qmax.toPrecision(5), e.kmax.toPrecision(5), tok(e.qToken), tok(e.kToken), String(e.id), e.path]);
          if (l.entries.length === 0) {
            process.stdout.write('  (no images yet)\n');
            continue;
          }
          const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
          for (const row of rows) process.stdout.write('  ' + row.map((x, c) => (c === row.length - 1 ? x : c < 4 ? x.padStart(widths[c]) : x.padEnd(widths[c]))).join('  ') + '\n');
        }
      } finally {
        r.db.close();
      }
    });
}
