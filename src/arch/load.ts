/** Opening a model (path, checkpoint file or hub id) and mapping it to the canonical spec. */
import { basename, resolve } from 'node:path';
import { openModel } from '../checkpoint/open.js';
import { buildSpec } from './registry.js';
import type { VitSpec } from './spec.js';

/** How to open a model: the flags every command that takes a <model> shares. */
export interface ModelFlags {
  offline?: boolean;
  revision?: string;
  part?: string;
  numHeads?: number;
}

/** Opens a model given on the command line and maps it to the canonical spec. */
export async function loadSpec(input: string, flags: ModelFlags = {}): Promise<{ spec: VitSpec; close: () => Promise<void> }> {
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
