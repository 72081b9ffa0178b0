import { Command, Option } from 'commander';
import { UserError } from '../errors.js';

import type { ModelFlags } from '../arch/load.js';

export type { ModelFlags };

export function addModelOptions(cmd: Command): Command {
  return cmd
    .option('--offline', 'use only the local Hugging Face cache (also HF_HUB_OFFLINE=1)')
    .option('--revision <rev>', 'hub revision (branch, tag or commit); same as org/name@rev')
    .option('--part <name>', 'which model inside a multi-model checkpoint (I-JEPA: encoder | target_encoder | predictor)')
    .addOption(new Option('--num-heads <n>', 'number of attention heads, for checkpoints whose config does not say (timm names of unknown size, SimMIM)').argParser(positiveInt('--num-heads')));
}

export function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new UserError(`${flag} ${v}: expected a positive integer`);
    return n;
  };
}

