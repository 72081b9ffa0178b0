/**
 * Ablation benchmark: the whole ablate pipeline as the CLI runs it (open the checkpoint, SVD of
 * the head, build the sessions, run, write the run directory) on a ViT-B/16-sized timm checkpoint
 * with random weights (bench/synthetic-checkpoint.ts), sweeping the top modes of head 3 of
 * several layers l over a few images.
 *
 * Target per ablated mode: ≤ (L − l)/L + 0.05 of a forward pass (each ablation reruns only
 * blocks l..L−1 from the residual the reference pass kept). A recording Progress (the job
 * advances it after every forward run) times each run, so the ratio is taken inside the loop,
 * run against run, batch by batch (load on a shared machine hits both alike); the first batch
 * (session warm-up) is left out. Reported per layer:
 * - per mode / reference: mean ablated run ÷ the reference run (a whole forward pass with the
 *   residual and attention taps) of the same batch, wall clock and CPU seconds;
 * - per mode / forward: per mode over all images ÷ a plain forward (logits only) timed around the job;
 * - command / modes / forward: the whole pipeline's wall time (fixed costs included) per mode.
 *
 *   node dist/bench/ablate.js [images=8] [modes=8] [layers=0,6,11] [batch=4] [threads]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadSpec } from '../src/arch/load.js';
import { NpyPixels } from '../src/images/source.js';
import { writeNpy } from '../src/io/npy.js';
import { runAblation, sweepTargets, writeAblation } from '../src/jobs/ablate.js';
import type { Progress } from '../src/progress.js';
import { VitRuntime } from '../src/runtime/vit-runtime.js';
import { VIT_B16, writeSyntheticTimm } from './synthetic-checkpoint.js';

export interface AblateLayerBench {
  layer: number;
  modes: number;
  images: number;
  /** Mean ablated run ÷ the same batch's reference run (warm batches), wall clock. */
  ratio: number;
  /** The same in CPU seconds of the process. */
  cpuRatio: number;
  /** (L − l)/L + 0.05. */
  target: number;
  /** A plain forward over the images (logits only), seconds, mean of the runs before and after. */
  forwardS: number;
  /** Per ablated mode over all images (warm batches, scaled to all images), seconds. */
  perModeS: number;
  /** The whole pipeline, seconds. */
  commandS: number;
  commandRatio: number;
}

interface Mark {
  wall: number;
  cpu: number;
}
const mark = (): Mark => {
  const c = process.cpuUsage();
  return { wall: performance.now() / 1000, cpu: (c.user + c.system) / 1e6 };
};

/** A Progress that keeps the wall/CPU time of every advance (one per forward run of the job). */
function recorder(): Progress & { runs: { wall: number; cpu: number; n: number }[] } {
  let last = mark();
  const runs: { wall: number; cpu: number; n: number }[] = [];
  return {
    runs,
    start: () => void (last = mark()),
    advance: (n) => {
      const m = mark();
      runs.push({ wall: m.wall - last.wall, cpu: m.cpu - last.cpu, n });
      last = m;
    },
    note: () => {},
    end: () => {},
  };
}

function randomPixels(n: number): Float32Array {
  const a = new Float32Array(n * 3 * 224 * 224);
  let x = 2654435761;
  for (let i = 0; i < a.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    a[i] = (x / 4294967296 - 0.5) * 4;
  }
  return a;
}

export async function benchAblate(images = 8, modes = 8, layers = [0, 6, 11], batch = 4, threads?: number): Promise<AblateLayerBench[]> {
  const dir = mkdtempSync(join(tmpdir(), 'qkscope-bench-ablate-'));
  try {
    const model = join(dir, 'vit-b16');
    writeSyntheticTimm(model, VIT_B16);
    const pixels = join(dir, 'pixels.npy');
    const px = randomPixels(images);
    writeNpy(pixels, '<f4', [images, 3, 224, 224], px);
    const per = 3 * 224 * 224;
    const plain = await loadSpec(model, {});
    const rt = await VitRuntime.create(plain.spec, { outputs: { logits: true }, threads });
    await rt.run(px.subarray(0, per), 1); // warm-up
    const forward = async () => {
      const t0 = performance.now();
      for (let s = 0; s < images; s += batch) await rt.run(px.subarray(s * per, Math.min(images, s + batch) * per), Math.min(batch, images - s));
      return (performance.now() - t0) / 1000;
    };
    const L = plain.spec.layers;
    const out: AblateLayerBench[] = [];
    try {
      for (const layer of layers) {
        const before = await forward();
        const t0 = performance.now();
        // What `qkscope ablate MODEL --pixels X --layer l --head 3 --sweep --top-modes M --no-figures` does.
        const { spec, close } = await loadSpec(model, {});
        const source = NpyPixels.open(pixels, { channels: spec.channels, patchSize: spec.patchSize, imageSize: spec.imageSize });
        const rec = recorder();
        try {
          const { targets, sweep } = sweepTargets(spec, { layer, head: 3, topModes: modes });
          const r = await runAblation(spec, source, { targets, sweep, batch, threads }, { progress: rec });
          await writeAblation(r, join(dir, `abl-${layer}`), { figures: false });
        } finally {
          source.close();
          await close();
        }
        const commandS = (performance.now() - t0) / 1000;
        const forwardS = (before + (await forward())) / 2;
        // Runs come per batch as [reference, mode 0, ..., mode M−1]; batch 0 warms the sessions up.
        const batches = rec.runs.length / (1 + modes);
        let wall = 0, cpu = 0, refWall = 0, refCpu = 0, warmImages = 0;
        for (let k = batches > 1 ? 1 : 0; k < batches; k++) {
          const b = rec.runs.slice(k * (1 + modes), (k + 1) * (1 + modes));
          refWall += b[0].wall;
          refCpu += b[0].cpu;
          warmImages += b[0].n;
          for (const x of b.slice(1)) {
            wall += x.wall / modes;
            cpu += x.cpu / modes;
          }
        }
        const perModeS = (wall * images) / warmImages;
        out.push({ layer, modes, images, ratio: wall / refWall, cpuRatio: cpu / refCpu, target: (L - layer) / L + 0.05, forwardS, perModeS, commandS, commandRatio: commandS / modes / forwardS });
      }
    } finally {
      await rt.close();
      await plain.close();
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [images, modes, layers, batch, threads] = process.argv.slice(2);
  const r = await benchAblate(Number(images) || 8, Number(modes) || 8, layers ? layers.split(',').map(Number) : undefined, Number(batch) || 4, Number(threads) || undefined);
  console.log(`== ablate --sweep --top-modes ${r[0].modes}, ViT-B/16-sized random checkpoint, head 3 of layer l, ${r[0].images} images: time per ablated mode ÷ one forward pass ==`);
  console.table(
    r.map((x) => ({
      layer: x.layer,
      'per mode / reference (wall)': x.ratio.toFixed(3),
      'per mode / reference (CPU)': x.cpuRatio.toFixed(3),
      'target (L−l)/L+0.05': x.target.toFixed(3),
      ok: Math.min(x.ratio, x.cpuRatio) <= x.target ? 'yes' : 'NO',
      'forward s': x.forwardS.toFixed(2),
      'per mode / forward': (x.perModeS / x.forwardS).toFixed(3),
      'command s': x.commandS.toFixed(1),
      'command / modes / forward': x.commandRatio.toFixed(3),
    })),
  );
}
