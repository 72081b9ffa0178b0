import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { heatmapFigure } from './figures/heatmap.js';
import { headsFigure } from './figures/heads.js';
import { svgToPng } from './plot.js';

/** The subset of an svd summary the figures need (see store/svd-run.ts). */
export interface SvdFigureInput {
  model: { id: string };
  dims: { width: number };
  chance: { mode95: { lo: number; hi: number } };
  layers: { layer: number; heads: { head: number; weighted_cosine: number; sigma: number[]; cosine: number[] }[] }[];
}

/** Writes an SVG and its PNG rendering side by side. */
export async function writeFigure(path: string, svg: string): Promise<void> {
  writeFileSync(`${path}.svg`, svg);
  writeFileSync(`${path}.png`, await svgToPng(svg));
}

/** heatmap.{svg,png} and heads.{svg,png} of one svd run. */
export async function writeSvdFigures(s: SvdFigureInput, outDir: string): Promise<void> {
  const heat = heatmapFigure({
    title: s.model.id,
    subtitle: 'σ-weighted cosine Σσₙcₙ/Σσₙ of each head (LayerNorm space; indices 0-based)',
    values: s.layers.map((l) => l.heads.map((h) => h.weighted_cosine)),
  });
  const heads = headsFigure({
    title: s.model.id,
    subtitle: `mode cosines cₙ = uₙ·vₙ (dots), 95% chance band for d=${s.dims.width} (grey), σₙ/σ_max (line); 0-based`,
    layers: s.layers.map((l) => ({
      layer: l.layer,
      heads: l.heads.map((h) => ({ head: h.head, sigma: h.sigma, cosine: h.cosine, weightedCosine: h.weighted_cosine, band95: s.chance.mode95 })),
    })),
  });
  await Promise.all([writeFigure(join(outDir, 'heatmap'), heat), writeFigure(join(outDir, 'heads'), heads)]);
}
