// The README's "Library" example, verbatim (test/package/consumer.test.ts checks they are the same).
import { loadSpec, runSvd, embedImages, readSvdRun, writeSvd, heatmapFigure, svgToPng } from 'qkscope';
import { writeFileSync } from 'node:fs';

const model = process.argv[2] ?? 'google/vit-base-patch16-224';
const { spec, close } = await loadSpec(model); // a folder, a checkpoint file or a hub id
try {
  // The modes of every head, in memory (what `qkscope svd` computes).
  const r = await runSvd(spec);
  const L = r.stats.dims.layers;
  console.log(`${spec.modelId}: layer 0 score ${r.stats.layers[0].mean_weighted_cosine.toFixed(3)}, layer ${L - 1} ${r.stats.layers[L - 1].mean_weighted_cosine.toFixed(3)}`);
  // σ and c of head 0 of layer 0; U is [L, H, d, d_h] (column n is u_n).
  console.log('sigma', Array.from(r.sigma.subarray(0, 3), (s) => s.toFixed(3)).join(' '), 'cosine', Array.from(r.cosine.subarray(0, 3), (c) => c.toFixed(3)).join(' '));

  // Write it as a run directory, read it back, draw a figure of your own.
  await writeSvd(r, 'runs/lib-example', { figures: false });
  const back = readSvdRun('runs/lib-example');
  console.log('U', back.U().shape.join('x'));
  const svg = heatmapFigure({ title: spec.modelId, values: back.summary.layers.map((l) => l.heads.map((h) => h.weighted_cosine)) });
  writeFileSync('runs/lib-example/my-heatmap.png', await svgToPng(svg));

  // Images through the model: one [N, T, d] array per requested layer.
  const images = process.argv.slice(3);
  if (images.length) {
    const x = await embedImages(spec, images, { layers: [0, L - 1] });
    console.log(`embedded ${x.ids.length} image(s): ln[0] has ${x.ln[0].length} values, ${x.skipped.length} skipped`);
  }
} finally {
  await close();
}
