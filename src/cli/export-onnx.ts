import { statSync } from 'node:fs';
import { Command, Option } from 'commander';
import { addModelOptions, type ModelFlags } from './model-options.js';
import { loadSpec } from '../arch/load.js';
import { checkOnnxOut, runExportOnnx, writeExportOnnx } from '../jobs/export-onnx.js';
import type { LayerSelection } from '../runtime/vit-graph.js';
import { addProgressOption, withJobContext, type ProgressFlags } from './context.js';
import { parseLayers } from './embed.js';

interface ExportOnnxFlags extends ModelFlags, ProgressFlags {
  out: string;
  layers: LayerSelection;
}

export function exportOnnxCommand(): Command {
  const cmd = new Command('export-onnx')
    .description('write the model as one ONNX file (the graph every qkscope forward pass runs), with the outputs the decomposition needs')
    .argument('<model>', 'model directory (HF or timm layout), checkpoint file, or Hugging Face id org/name[@rev]')
    .requiredOption('-o, --out <file.onnx>', 'the .onnx file to write (its card, FILE.json, is written beside it)')
    .addOption(new Option('--layers <list>', 'comma-separated 0-based blocks whose ln / attention / scores are outputs, or all').default('all').argParser(parseLayers))
    .addHelpText(
      'after',
      '\nInput: pixels [N, C, H, W] float32, preprocessed as FILE.json says (resize, centre crop, rescale, normalise).\n' +
        'Outputs: logits [N, classes] and features [N, d\'] (when the model has them); per tapped block l:\n' +
        '  ln.l [N, T, d]         LayerNorm output feeding the attention (the space of the singular modes)\n' +
        '  attention.l [N,H,T,T]  softmax probabilities\n' +
        '  scores.l [N,H,T,T]     pre-softmax logits (÷√d_h, relative position bias included)\n' +
        '  qk.l [N,H,T,T]         q·kᵀ/√d_h alone (only models with a relative position bias)\n' +
        'Tokens: special tokens first, then patches in raster order (FILE.json layout). Runs in onnxruntime\n' +
        '(node, python, web); the graph uses onnxruntime contrib ops (com.microsoft) for some activations.\n' +
        'Models over 1.8 GB of weights are written with ONNX external data (FILE.onnx.data).\n' +
        '\nExample:\n  qkscope export-onnx google/vit-base-patch16-224 --out vit-b16.onnx\n  qkscope export-onnx ./my-timm-vit --out small.onnx --layers 0,5,11\n',
    );
  addProgressOption(cmd);
  addModelOptions(cmd);
  cmd.action(async (model: string, flags: ExportOnnxFlags) => {
    checkOnnxOut(flags.out);
    const { spec, close } = await loadSpec(model, flags);
    try {
      const files = await withJobContext(flags, async (ctx) => writeExportOnnx(await runExportOnnx(spec, { layers: flags.layers, input: model }, ctx), flags.out));
      const bytes = files.reduce((a, f) => a + statSync(f).size, 0);
      process.stdout.write(`${spec.modelId}: wrote ${files.join(', ')} (${(bytes / 1e6).toFixed(1)} MB)\n`);
    } finally {
      await close();
    }
  });
  return cmd;
}
