import { Command, Option } from 'commander';
import { openModel } from '../checkpoint/open.js';
import { buildSpec } from '../arch/registry.js';
import type { VitSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { basename, resolve } from 'node:path';

/** Flags every command that takes a <model> shares. */
export interface ModelFlags {
  offline?: boolean;
  revision?: string;
  part?: string;
  numHeads?: number;
}

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

/** Opens a model given on the command line and maps it to the canonical spec. */
export async function loadSpec(input: string, flags: ModelFlags): Promise<{ spec: VitSpec; close: () => Promise<void> }> {
  const opened = await openModel(input, {
    offline: flags.offline, // openModel itself honours HF_HUB_OFFLINE with Python's rules
    revision: flags.revision,
    part: flags.part,
  });
  try {
    const spec = buildSpec({
      config: opened.config,
      preprocessorConfig: opened.preprocessorConfig,
      source: opened.source,
      modelId: displayName(input, opened.hubId, flags.part),
      numHeads: flags.numHeads,
    });
    return { spec, close: () => opened.close() };
  } catch (e) {
    await opened.close();
    throw e;
  }
}

/** A short label for titles and legends: the hub id, else the checkpoint's folder or file name. */
export function displayName(input: string, hubId: string | undefined, part?: string): string {
  const base = hubId ?? basename(resolve(input));
  return part ? `${base}#${part}` : base;
}
