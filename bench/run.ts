// `npm run bench`: performance report (never a test). Each section measures ours against a
// reference measured in the same run on the same machine, and prints ratios.
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { benchSvd } from './svd.js';
import { benchEmbed } from './embed.js';
import { benchAblate } from './ablate.js';
import { benchScan } from './scan.js';

const only = process.argv[2]; // e.g. `npm run bench -- svd`
const results: Record<string, unknown> = { machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version } };

if (!only || only === 'svd') {
  console.log('== svd: whole `qkscope svd` command, process start to files written (best of 3) ==');
  const rows = benchSvd();
  console.table(rows.map((r) => ({ model: r.model, figures: r.figures, 'wall s': r.wallS.toFixed(3), 'peak RSS MB': r.peakRssMB.toFixed(0), 'q/k MB': r.qkMB.toFixed(0), 'RSS / q/k': r.rssOverQk.toFixed(2), 'file MB': r.fileMB.toFixed(0) })));
  results.svd = rows;
}

if (!only || only === 'embed') {
  console.log('== embed: random ViT-B/16, batch 8, vs this machine\'s fp32 MatMul rate (onnxruntime, same run) ==');
  const r = await benchEmbed();
  console.table({
    'images/s (logits only)': r.imagesPerSec.toFixed(2),
    'GFLOP/image': r.gflopPerImage.toFixed(1),
    'achieved GFLOP/s': r.achievedGflops.toFixed(1),
    'matmul GFLOP/s': r.matmulGflops.toFixed(1),
    'efficiency (target >= 0.65)': r.efficiency.toFixed(2),
    'efficiency per CPU second': r.cpuEfficiency.toFixed(2),
    'ln all layers overhead (target <= 10%)': (100 * r.lnAllOverhead).toFixed(1) + '%',
    'ln overhead per CPU second': (100 * r.lnAllCpuOverhead).toFixed(1) + '%',
    'peak RSS MB (target < 2000)': r.peakRssMB.toFixed(0),
  });
  results.embed = r;
}

if (!only || only === 'scan') {
  console.log('== scan: throughput vs forward-only on the same images and model (same run); peak RSS at 1000 vs 5000 images ==');
  const r = await benchScan();
  if (r.throughput)
    console.table({ model: r.throughput.model, images: r.throughput.images, 'forward images/s': r.throughput.forwardImagesPerSec.toFixed(2), 'scan images/s': r.throughput.scanImagesPerSec.toFixed(2), 'ratio (target >= 0.9)': r.throughput.ratio.toFixed(2), 'ratio per CPU second': r.throughput.cpuRatio.toFixed(2) });
  if (r.memory)
    console.table({ model: r.memory.model, 'peak RSS MB @1000': r.memory.peakRssMB[0].toFixed(0), 'peak RSS MB @5000': r.memory.peakRssMB[1].toFixed(0), 'ratio (target <= 1.10)': r.memory.ratio.toFixed(3) });
  results.scan = r;
}

if (!only || only === 'ablate') {
  // The full setting (all 64 modes x 100 images) is ~25 min of forwards on 2 cores;
  // QKSCOPE_BENCH_FULL=1 runs it. The ratio is per mode, so fewer modes/images measure the same.
  const full = process.env.QKSCOPE_BENCH_FULL === '1';
  const [images, modes] = full ? [100, 64] : [16, 6];
  console.log(`== ablate: ViT-B/16 (random), one head, ${modes} modes x ${images} images; time per mode / one forward pass ==`);
  const r = await benchAblate(images, modes, 8);
  console.table({ images: r.images, modes: r.modes, 'forward s': r.forwardS.toFixed(2), 'per mode s': r.perModeS.toFixed(2), 'ratio (target <= 1.2)': r.ratio.toFixed(2) });
  results.ablate = r;
}

writeFileSync('bench-results.json', JSON.stringify(results, null, 1) + '\n');
console.log('wrote bench-results.json');
