/**
 * Ablation benchmark (issue 7): ablate every mode of one ViT-B/16 head (random weights) over N
 * images, and compare the time per ablated mode with one plain forward pass (logits only, no
 * overridable weights) over the same images, measured in the same run. Target: ≤ 1.2×, i.e.
 * the per-run weight edit must not rebuild or re-optimise anything.
 *
 *   node dist/bench/ablate.js [images=100] [modes=64] [batch=8]
 *
 * (The full default is 64 × 100 ViT-B forwards; pass fewer modes/images on a small machine:
 * the ratio is per mode, so it does not depend on how many modes are swept.)
 */
import { pathToFileURL } from 'node:url';
import { VitRuntime } from '../src/runtime/vit-runtime.js';
import { runAblation } from '../src/jobs/ablate.js';
import { randomVitB16 } from './embed.js';
import { type PixelSource } from '../src/images/source.js';

class RandomPixels implements PixelSource {
  readonly channels = 3;
  readonly imageSize: [number, number] = [224, 224];
  constructor(readonly count: number) {}
  async read(start: number, n: number): Promise<Float32Array> {
    const a = new Float32Array(n * 3 * 224 * 224);
    let x = (start + 1) * 2654435761 >>> 0 || 1;
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
  describe() {
    return { source: 'random', count: this.count };
  }
  close() {}
}

export interface AblateBench {
  images: number;
  modes: number;
  batch: number;
  /** One plain forward pass over the images (logits only), seconds. */
  forwardS: number;
  /** The ablation job's unedited reference pass, seconds. */
  referenceS: number;
  /** Per ablated mode (forward with the edited W_q + metrics), seconds. */
  perModeS: number;
  /** perModeS / forwardS (target <= 1.2). */
  ratio: number;
}

export async function benchAblate(images = 100, modes = 64, batch = 8, threads?: number): Promise<AblateBench> {
  const spec = randomVitB16();
  const src = new RandomPixels(images);
  // Baseline: a plain forward over the same images (pixels read outside the timer), see below.
  const rt = await VitRuntime.create(spec, { outputs: { logits: true }, threads });
  await rt.run(await src.read(0, 1), 1); // warm-up
  const forward = async () => {
    let t = 0;
    for (let s = 0; s < images; s += batch) {
      const n = Math.min(batch, images - s);
      const px = await src.read(s, n);
      const t0 = performance.now();
      await rt.run(px, n);
      t += (performance.now() - t0) / 1000;
    }
    return t;
  };
  // Modes in chunks of 8 (one ablation job each, its session built once), with a plain forward
  // timed before every chunk and at the end: load changes on a shared machine hit both sides.
  const fw: number[] = [await forward()];
  let ablS = 0;
  let referenceS = 0;
  for (let c = 0; c < modes; c += 8) {
    const targets = Array.from({ length: Math.min(8, modes - c) }, (_, k) => ({ layer: 5, head: 3, modes: [c + k] }));
    const r = await runAblation(spec, src, { targets, batch, threads });
    ablS += r.timing.ablated_s;
    referenceS += r.timing.reference_s;
    fw.push(await forward());
  }
  await rt.close();
  const forwardS = fw.reduce((a, b) => a + b, 0) / fw.length;
  const perModeS = ablS / modes;
  return { images, modes, batch, forwardS, referenceS: referenceS / Math.ceil(modes / 8), perModeS, ratio: perModeS / forwardS };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [images, modes, batch] = process.argv.slice(2).map(Number);
  const r = await benchAblate(images || 100, modes || 64, batch || 8);
  console.log('== ablate: every mode of ViT-B/16 L5 H3, per-mode time vs one forward pass over the same images ==');
  console.table({
    images: r.images,
    'modes ablated': r.modes,
    'forward s (logits only)': r.forwardS.toFixed(3),
    'reference pass s (per job, overridable session)': r.referenceS.toFixed(3),
    's per mode': r.perModeS.toFixed(3),
    'per mode / forward (target <= 1.2)': r.ratio.toFixed(3),
  });
}
