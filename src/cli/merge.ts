import { Command } from 'commander';
import { mergeScans } from '../jobs/merge.js';

export function mergeCommand(): Command {
  return new Command('merge')
    .description('combine the shards of a sharded scan into one run (identical to a single scan)')
    .argument('<runs...>', 'scan run directories (all shards of one scan)')
    .requiredOption('-o, --out <dir>', 'new run directory')
    .addHelpText('after', '\nExample:\n  qkscope merge runs/scan/shard-* --out runs/scan-all\n')
    .action((runs: string[], flags: { out: string }) => {
      const r = mergeScans(runs, flags.out);
      process.stdout.write(`merged ${r.inputs} run${r.inputs === 1 ? '' : 's'}: ${r.images} images (${r.done} scanned, ${r.skipped} skipped); wrote ${r.outDir}\n`);
    });
}
