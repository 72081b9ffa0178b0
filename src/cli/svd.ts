import { Command, Option } from 'commander';
import { addModelOptions, positiveInt, type ModelFlags } from './model-options.js';
import { loadSpec } from '../arch/load.js';
import { runSvd, writeSvd } from '../jobs/svd.js';
import { withJobContext } from './context.js';

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
    .addOption(new Option('--threads <n>', 'CPU threads for the computation (default: 1 when the q/k weights are under 128 MB, else all cores up to 8)').argParser(positiveInt('--threads')))
    .addOption(new Option('--vectors <dtype>', 'dtype of U.npy and V.npy').choices(['float32', 'float64']).default('float32'))
    .option('--no-figures', 'skip heatmap/heads figures')
    .addHelpText('after', '\nExample:\n  qkscope svd google/vit-base-patch16-224 --out runs/vit-b16\n  qkscope svd ./my-timm-vit --out runs/mine --vectors float64\n' +
        '  qkscope svd encoder.pt --num-heads 8 --out runs/enc            (a torch.nn.TransformerEncoder state dict)\n' +
        '  qkscope svd my_vit.pth --layout my_vit.layout.json --out runs/my-vit   (any PyTorch ViT: docs/layouts.md)\n');
  addModelOptions(cmd);
  cmd.action(async (model: string, flags: SvdFlags) => {
    const { spec, close } = await loadSpec(model, flags);
    try {
      const r = await withJobContext({}, (ctx) => runSvd(spec, { threads: flags.threads, vectors: flags.vectors, input: model }, ctx));
      await writeSvd(r, flags.out, { figures: flags.figures });
      const ls = r.stats.layers;
      process.stdout.write(
        `${spec.modelId}: ${spec.family}, L=${spec.layers} H=${spec.heads} d=${spec.width} d_h=${spec.headDim}; ` +
          `layer-mean weighted cosine ${ls[0].mean_weighted_cosine.toFixed(3)} (layer 0) → ${ls[ls.length - 1].mean_weighted_cosine.toFixed(3)} (layer ${spec.layers - 1}); wrote ${flags.out}\n`,
      );
    } finally {
      await close();
    }
  });
  return cmd;
}
