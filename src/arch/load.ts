/** Opening a model (path, checkpoint file or hub id) and mapping it to the canonical spec. */
import { basename, join, resolve } from 'node:path';
import { openModel } from '../checkpoint/open.js';
import { buildSpec } from './registry.js';
import type { VitSpec } from './spec.js';

/** How to open a model: the flags every command that takes a <model> shares. */
export interface ModelFlags {
  offline?: boolean;
  revision?: string;
  part?: string;
  numHeads?: number;
  /** --allow-nonfinite (commander's spelling): analyse weights holding NaN/Inf instead of refusing them (`VitSpec.allowNonFinite`). */
  allowNonfinite?: boolean;
  /** --layout NAME|FILE.json: read the tensors with a declarative layout (arch/layout/, docs/layouts.md). */
  layout?: string;
}

/** Opens a model given on the command line and maps it to the canonical spec. */
export async function loadSpec(input: string, flags: ModelFlags = {}): Promise<{ spec: VitSpec; close: () => Promise<void> }> {
  const opened = await openModel(input, {
    offline: flags.offline, // openModel itself honours HF_HUB_OFFLINE with Python's rules
    revision: flags.revision,
    part: flags.part,
  });
  if (flags.allowNonfinite) opened.source.allowNonFinite = true;
  try {
    const spec = buildSpec({
      config: opened.config,
      preprocessorConfig: opened.preprocessorConfig,
      source: opened.source,
      modelId: displayName(input, opened.hubId, flags.part),
      numHeads: flags.numHeads,
      ...(flags.layout !== undefined ? { layout: flags.layout } : {}),
      ...(opened.dir ? { configFile: join(opened.dir, 'config.json'), preprocessorFile: join(opened.dir, 'preprocessor_config.json') } : {}),
    });
    if (flags.allowNonfinite) spec.allowNonFinite = true;
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
