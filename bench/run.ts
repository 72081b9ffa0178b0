// `npm run bench`: performance report (never a test). Each section measures ours against a
// reference measured in the same run on the same machine, and prints ratios.
//
//   npm run bench                 every section
//   npm run bench -- svd embed    only these (results merged into bench-results.json)
//
// Sections are imported when they run, so one section's module failing to load (a colleague's
// work in progress) does not stop the others.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';

type Section = (results: Record<string, unknown>) => Promise<void>;

const fmt = (x: number | null | undefined, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits));
const range = (s: { best: number; worst: number }, digits = 2) => `${fmt(s.best, digits)}–${fmt(s.worst, digits)}`;
const verdict = (met: boolean | null) => (met === null ? '-' : met ? 'yes' : 'NO');

const sections: Record<string, Section> = {
  async svd(results) {
    const { benchSvd } = await import('./svd.js');
    console.log('== svd: the whole `qkscope svd` command (spawn to files written), 3 interleaved rounds, vs numpy thin QR+SVD (compute alone, same rounds) ==');
    const r = benchSvd();
    if (!r.numpy.available) console.log(`numpy reference not run: ${r.numpy.why}`);
    else console.log(`numpy: ${PYTHON_NOTE(r.numpy.blas)}; max |σ_numpy − σ_ours| / σ_1: ${Object.entries(r.numpy.maxSigmaDiffRel ?? {}).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(', ')}`);
    console.table(
      r.rows.map((x) => ({
        model: x.model,
        figures: x.figures,
        'best s': fmt(x.wall.best, 3),
        'range s': range(x.wall, 3),
        'numpy s (range)': x.numpy ? `${fmt(x.numpy.best)} (${range(x.numpy)})` : '-',
        'ours / numpy per round: median (range)': x.ratio ? `${fmt(x.ratio.median)} (${range(x.ratio)})` : '-',
        target: x.target,
        met: verdict(x.met),
        'peak RSS MB': fmt(x.peakRssMB, 0),
        'q/k MB': fmt(x.qkMB, 0),
        'load 1m': `${fmt(x.load[0], 1)} → ${fmt(x.load[1], 1)}`,
      })),
    );
    results.svd = r;
  },

  async embed(results) {
    const { benchEmbed } = await import('./embed.js');
    console.log('== embed: random ViT-B/16, batch 8: the whole `qkscope embed` command vs this machine\'s fp32 GEMM 2048² (numpy, onnxruntime; same rounds) ==');
    const r = await benchEmbed();
    const np = 'gflops' in r.numpyGemm ? r.numpyGemm : null;
    if (!np) console.log(`numpy reference not run: ${(r.numpyGemm as { unavailable: string }).unavailable}`);
    else console.log(`numpy: ${PYTHON_NOTE(np.blas)}`);
    console.table({
      'command images/s (best, range)': `${fmt(r.commandImagesPerSec.best)} (${range(r.commandImagesPerSec)})`,
      'command wall s (range)': range(r.commandWall),
      'GFLOP/image': fmt(r.gflopPerImage, 1),
      'achieved GFLOP/s': fmt(r.achievedGflops, 1),
      'numpy GEMM GFLOP/s (range)': np ? `${fmt(np.gflops.best, 1)} (${range(np.gflops, 1)})` : '-',
      'achieved / numpy GEMM per round (target >= 0.85)': r.ratioNumpy ? `${fmt(r.ratioNumpy.median)} (${range(r.ratioNumpy)})` : '-',
      'onnxruntime GEMM GFLOP/s (range)': `${fmt(r.ortGemmGflops.best, 1)} (${range(r.ortGemmGflops, 1)})`,
      'achieved / onnxruntime GEMM per round': `${fmt(r.ratioOrt.median)} (${range(r.ratioOrt)})`,
      'forward images/s fused (range)': `${fmt(r.forward.fused.best)} (${range(r.forward.fused)})`,
      'forward images/s plain nodes (range)': `${fmt(r.forward.plain.best)} (${range(r.forward.plain)})`,
      'fused gain per pair, wall (range)': `${fmt(100 * r.forward.fusedGain.median, 1)}% (${fmt(100 * r.forward.fusedGain.worst, 1)}…${fmt(100 * r.forward.fusedGain.best, 1)}%)`,
      'fused gain per pair, per CPU s (range)': `${fmt(100 * r.forward.fusedCpuGain.median, 1)}% (${fmt(100 * r.forward.fusedCpuGain.worst, 1)}…${fmt(100 * r.forward.fusedCpuGain.best, 1)}%)`,
      'ln all layers overhead': `${fmt(100 * r.lnAllOverhead, 1)}%`,
      'command peak RSS MB': fmt(r.commandPeakRssMB, 0),
      'load 1m': `${fmt(r.load[0], 1)} → ${fmt(r.load[1], 1)}`,
    });
    results.embed = r;
  },

  async scan(results) {
    const { benchScan } = await import('./scan.js');
    console.log('== scan: ViT-B/16 (random), all layers, top 8: the whole `qkscope scan` vs `qkscope embed --layers 11` on the same photos (3 interleaved rounds); the image loop vs a forward-only loop ==');
    const r = await benchScan();
    console.log(`images: ${r.photos}`);
    console.table({
      'scan wall s (range)': range(r.commands.scanWall, 2),
      'embed --layers 11 wall s (range)': range(r.commands.embedWall, 2),
      'scan / embed throughput (target >= 0.9)': fmt(r.commands.ratio),
      met: verdict(r.commands.ratio >= 0.9),
      'scan peak RSS MB (target < 1500)': fmt(r.commands.scanPeakRssMB, 0),
      'embed peak RSS MB': fmt(r.commands.embedPeakRssMB, 0),
      'loop images/s scan (range)': range(r.loop.scanImagesPerSec, 2),
      'loop images/s forward only (range)': range(r.loop.forwardImagesPerSec, 2),
      'loop scan / forward (target >= 0.95)': fmt(r.loop.ratio),
      'loop seconds: wait images / forward / lists / commit': `${fmt(r.loop.timing.waitImages)} / ${fmt(r.loop.timing.forward)} / ${fmt(r.loop.timing.lists)} / ${fmt(r.loop.timing.commit)}`,
      'load 1m': `${fmt(r.commands.load[0], 1)} → ${fmt(r.commands.load[1], 1)}`,
    });
    if (r.memory) console.table({ 'peak RSS MB @1000': fmt(r.memory.peakRssMB[0], 0), 'peak RSS MB @5000': fmt(r.memory.peakRssMB[1], 0), 'ratio (target <= 1.10)': fmt(r.memory.ratio, 3) });
    results.scan = r;
  },

  async figure(results) {
    const { benchFigure } = await import('./figure.js');
    console.log('== figure modes and the serve Mode view: real ViT-Tiny (../shared), layer 5 head 1 ==');
    const r = await benchFigure();
    if (!r.available) {
      console.log(`not run: ${r.why}`);
      results.figure = r;
      return;
    }
    const f = r.figure!;
    const s = r.serve && 'modeMs' in r.serve ? r.serve : null;
    console.table({
      'figure modes 0-5 both signs, 8 images: wall s (range; target <= 3)': `${fmt(f.wall.best)} (${range(f.wall)})`,
      'PNG MB (target <= 3)': fmt(f.pngMB),
      'peak RSS MB': fmt(f.peakRssMB, 0),
      'serve Mode view, 16 images drawn, ms (3 modes; target <= 1500)': s ? s.modeMs.join(', ') : (r.serve as { unavailable: string }).unavailable,
      'serve repeat visit ms': s ? String(s.repeatMs) : '-',
      'load 1m': `${fmt(r.load[0], 1)} → ${fmt(r.load[1], 1)}`,
    });
    results.figure = r;
  },

  async ablate(results) {
    const { benchAblate } = await import('./ablate.js');
    // The ratio is per mode, so a few images and modes measure it; QKSCOPE_BENCH_FULL=1 runs more.
    const full = process.env.QKSCOPE_BENCH_FULL === '1';
    const [images, modes] = full ? [32, 16] : [8, 8];
    console.log(`== ablate --sweep: ViT-B/16-sized (random), head 3 of layer l, ${modes} modes x ${images} images; time per mode / one forward pass ==`);
    const r = await benchAblate(images, modes, [0, 6, 11]);
    console.table(r.map((x) => ({ layer: x.layer, 'per mode / reference (wall)': x.ratio.toFixed(3), 'per mode / reference (CPU)': x.cpuRatio.toFixed(3), 'target (L−l)/L+0.05': x.target.toFixed(3), 'per mode / forward': (x.perModeS / x.forwardS).toFixed(3), 'command / modes / forward': x.commandRatio.toFixed(3) })));
    results.ablate = r;
  },
};

/** Names the BLAS a numpy reference ran on, and warns when it is the reference (netlib) one. */
function PYTHON_NOTE(blas: string[] | undefined): string {
  const libs = blas ?? [];
  const netlib = libs.some((p) => /\/blas\/libblas\.so/.test(p)) && !libs.some((p) => /openblas|mkl|blis|atlas/i.test(p));
  return `/usr/bin/python3 numpy on ${libs.map((p) => p.split('/').slice(-2).join('/')).join(', ') || 'an unknown BLAS'}${netlib ? ' (the reference netlib BLAS: single-threaded, unoptimised)' : ''}`;
}

const wanted = process.argv.slice(2);
for (const w of wanted) if (!sections[w]) throw new Error(`unknown bench section ${w}; sections: ${Object.keys(sections).join(', ')}`);
const file = 'bench-results.json';
let results: Record<string, unknown> = {};
if (wanted.length && existsSync(file)) {
  try {
    results = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    results = {};
  }
}
results.machine = { cpus: cpus().length, model: cpus()[0]?.model, node: process.version };
for (const name of wanted.length ? wanted : Object.keys(sections)) {
  console.log(`\n[${new Date().toISOString()}] load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  try {
    await sections[name](results);
  } catch (e) {
    console.error(`bench section ${name} failed: ${e instanceof Error ? e.message : e}`);
    results[name] = { failed: String(e instanceof Error ? e.message : e) };
    process.exitCode = 1;
  }
  writeFileSync(file, JSON.stringify(results, null, 1) + '\n');
}
console.log(`wrote ${file}`);
