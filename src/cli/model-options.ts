import { Command, Option } from 'commander';
import { UserError } from '../errors.js';

import type { ModelFlags } from '../arch/load.js';
import { PRESETS } from '../arch/layout/presets.js';

export type { ModelFlags };

export function addModelOptions(cmd: Command): Command {
  return cmd
    .option('--offline', 'use only the local Hugging Face cache (also HF_HUB_OFFLINE=1)')
    .option('--revision <rev>', 'hub revision (branch, tag or commit); same as org/name@rev')
    .option('--part <name>', 'which model inside a multi-model checkpoint (I-JEPA: encoder | target_encoder | predictor)')
    .addOption(new Option('--num-heads <n>', 'number of attention heads, for checkpoints whose config does not say (timm names of unknown size, SimMIM)').argParser(positiveInt('--num-heads')))
    .option('--allow-nonfinite', 'analyse weights that hold NaN/Inf instead of refusing them (svd marks the affected heads)')
    .option(
      '--layout <name|file.json>',
      `read the tensors with a declarative layout: a preset (${PRESETS.map((p) => p.def.name).join(', ')}; recognised without the flag too) or a JSON file describing any PyTorch ViT (docs/layouts.md)`,
    );
}

export function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new UserError(`${flag} ${v}: expected a positive integer`);
    return n;
  };
}

