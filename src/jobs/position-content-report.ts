/** Writes a position-content run: position_content.json, shares.npy, heads.csv, figure. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VitSpec } from '../arch/spec.js';
import { toCsv } from '../io/csv.js';
import { writeNpy } from '../io/npy.js';
import { positionContentFigure } from '../report/figures/position-content.js';
import { writeFigure } from '../report/svd-figures.js';
import { VERSION } from '../version.js';
import type { PositionContentResult } from './position-content.js';
import { ensureDir } from '../io/fs.js';

export const PC_DEFINITION = {
  position: 'P_t = mean over the images of the embedding x_{m,t} of token t (per layer)',
  content: 'C_{m,t} = x_{m,t} − P_t',
  terms: 'mode n’s logit σ_n (x_i·u_n)(v_n·x_j) = CC + CP + PC + PP with x = C + P on each side; first letter = query side (i), second = key side (j)',
  energy: 'E_XY = Σ over images and token pairs (i, j) of XY² (σ_n² included; 1/√d_h omitted, shares do not depend on it)',
  share: 'E_XY / (E_CC + E_CP + E_PC + E_PP): the four parts’ energies add to 1 (the square of the full product has cross terms that belong to no part)',
  head: 'energies summed over the head’s modes, then shares (modes weigh by their energy)',
  layer: 'energies summed over the layer’s heads, then shares',
};

export async function writePositionContentReport(spec: VitSpec, r: PositionContentResult, o: { outDir: string; figures: boolean; manifest?: Record<string, unknown> }): Promise<string[]> {
  ensureDir(o.outDir);
  const H = spec.heads;
  const dh = spec.headDim;
  const L = r.layers.length;
  const arr = new Float64Array(L * H * dh * 4).fill(NaN);
  r.layers.forEach((ly, li) => ly.heads.forEach((h) => h.shares.forEach((s, n) => s && arr.set(s, ((li * H + h.head) * dh + n) * 4))));
  writeNpy(join(o.outDir, 'shares.npy'), '<f8', [L, H, dh, 4], arr);
  const rows = r.layers.flatMap((ly) => ly.heads.map((h) => [ly.layer, h.head, ...(h.total_shares ?? [null, null, null, null]), h.total.reduce((a, b) => a + b, 0)]));
  writeFileSync(join(o.outDir, 'heads.csv'), toCsv(rows, { header: ['layer', 'head', 'share_cc', 'share_cp', 'share_pc', 'share_pp', 'energy'], eol: '\n' }));
  const files = ['position_content.json', 'shares.npy', 'heads.csv'];
  if (o.figures) {
    const svg = positionContentFigure({
      title: `${spec.modelId}: position vs content`,
      subtitle: `share of each mode’s logit energy, ${r.embedding === 'ln' ? 'LayerNorm output' : 'residual stream'}, ${r.images} images; first letter = query side; 0-based`,
      layers: r.layers.map((ly) => ({ label: `L${ly.layer}`, shares: ly.total_shares })),
      heads: r.layers.flatMap((ly) => ly.heads.map((h) => ({ label: `L${ly.layer} H${h.head}`, shares: h.total_shares }))),
    });
    await writeFigure(join(o.outDir, 'position_content'), svg);
    files.push('position_content.svg', 'position_content.png');
  }
  const json = {
    tool: 'qkscope',
    version: VERSION,
    command: 'position-content',
    created: new Date().toISOString(),
    index_base: 0,
    model: { id: spec.modelId, family: spec.family, layers: spec.layers, heads: H, width: spec.width, head_dim: dh },
    images: r.images,
    tokens: r.tokens,
    token_range: r.range,
    embedding: r.embedding,
    parts: ['CC', 'CP', 'PC', 'PP'],
    definition: PC_DEFINITION,
    layers: r.layers.map((ly) => ({
      layer: ly.layer,
      shares: ly.total_shares,
      energy: ly.total,
      heads: ly.heads.map((h) => ({ head: h.head, shares: h.total_shares, energy: h.total, sigma: h.sigma, mode_shares: h.shares })),
    })),
    ...(o.manifest ?? {}),
  };
  writeFileSync(join(o.outDir, 'position_content.json'), JSON.stringify(json, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
  return files;
}
