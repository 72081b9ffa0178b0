import { Command, Option } from 'commander';
import { addModelOptions, loadSpec, positiveInt, type ModelFlags } from './model-options.js';
import { runSvd } from '../store/svd-run.js';


interface SvdFlags extends ModelFlags {
  out: string;
  threads?: number;
  vectors: 'float32' | 'float64';
  figures: boolean;
}

export function svdCommand(): Command {
  const cmd = new Command('svd')
    .description("singular modes of every head's query-key interaction W_qᵀW_k (weights only)")
    .argument('<model>', 'model directory (HF or timm layout), checkpoint file, or Hugging Face id org/name[@rev]')
    .requiredOption('-o, --out <dir>', 'output directory')
    .addOption(new Option('--threads <n>', 'worker threads (default: all cores)').argParser(positiveInt('--threads')))
    .addOption(new Option('--vectors <dtype>', 'dtype of U.npy and V.npy').choices(['float32', 'float64']).default('float32'))
    .option('--no-figures', 'skip heatmap/heads figures')
    .addHelpText('after', '\nExample:\n  qkscope svd google/vit-base-patch16-224 --out runs/vit-b16\n  qkscope svd ./my-timm-vit --out runs/mine --vectors float64\n');
  addModelOptions(cmd);
  cmd.action(async (model: string, flags: SvdFlags) => {
    const { spec, close } = await loadSpec(model, flags);
    try {
      const tty = process.stderr.isTTY;
      const summary = await runSvd(spec, {
        outDir: flags.out,
        input: model,
        threads: flags.threads,
        vectorsDtype: flags.vectors,
        onLayer: tty ? (l, L) => process.stderr.write(`\rsvd: layer ${l + 1}/${L}`) : undefined,
      });
      if (tty) process.stderr.write('\n');
      // Loaded only when drawing: Plot, linkedom and sharp cost start-up time.
      if (flags.figures) await (await import('../report/svd-figures.js')).writeSvdFigures(summary, flags.out);
      const first = summary.layers[0].mean_weighted_cosine;
      const last = summary.layers[summary.layers.length - 1].mean_weighted_cosine;
      process.stdout.write(
        `${spec.modelId}: ${spec.family}, L=${spec.layers} H=${spec.heads} d=${spec.width} d_h=${spec.headDim}; ` +
          `layer-mean weighted cosine ${first.toFixed(3)} (layer 0) → ${last.toFixed(3)} (layer ${spec.layers - 1}); wrote ${flags.out}\n`,
      );
    } finally {
      await close();
    }
  });
  return cmd;
}
