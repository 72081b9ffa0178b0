/**
 * Runs to export: tiny models (random weights, test/fixtures/models.ts) analysed with the real
 * CLI: `vit-a` scanned over a folder of generated photos (svd + run.db), `group/vit-b` (a BEiT,
 * with relative position bias) with svd only. Made once per test process.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, tempDir } from '../helpers/paths.js';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { makePhoto } from '../server/fixture.js';

export interface ExportFixture {
  root: string;
  runsDir: string;
  imagesDir: string;
  images: string[];
  models: Record<string, string>;
}

export const EFIX = { d: 48, heads: 3, patch: 4, image: 32, top: 3 };

function cli(args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`qkscope ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

let made: Promise<ExportFixture> | null = null;

export function exportFixture(): Promise<ExportFixture> {
  made ??= (async () => {
    const root = tempDir('qkscope-export-');
    const runsDir = join(root, 'runs');
    const imagesDir = join(root, 'images');
    mkdirSync(imagesDir, { recursive: true });
    const images: string[] = [];
    for (let i = 0; i < 7; i++) {
      const p = join(imagesDir, `photo-${i}.png`);
      await makePhoto(p, i + 3, 40 + i * 4, 36 + i * 3);
      images.push(p);
    }
    const a = writeModel(join(root, 'models', 'vit-a'), 'hf-vit', makeLayoutWeights('hf-vit', { d: EFIX.d, heads: EFIX.heads, layers: 3, patch: EFIX.patch, image: EFIX.image, seed: 21 }));
    const b = writeModel(join(root, 'models', 'vit-b'), 'hf-beit', makeLayoutWeights('hf-beit', { d: EFIX.d, heads: EFIX.heads, layers: 2, patch: EFIX.patch, image: EFIX.image, seed: 22 }));
    cli(['scan', a.path, imagesDir, '--out', join(runsDir, 'vit-a'), '--top', String(EFIX.top), '--batch', '4', '--threads', '1', '--no-figures']);
    cli(['svd', b.path, '--out', join(runsDir, 'group', 'vit-b'), '--no-figures', '--threads', '1']);
    return { root, runsDir, imagesDir, images, models: { 'vit-a': a.path, 'group/vit-b': b.path } };
  })();
  return made;
}
