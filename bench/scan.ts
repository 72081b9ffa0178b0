/**
 * `scan` benchmark, as users run it (a generated ViT-B/16 timm checkpoint; the shared photos when
 * ../shared is there, else generated JPEGs of photo size):
 *
 * 1. Whole commands: `qkscope scan MODEL PHOTOS --top 8` (all layers; svd, figures, run.db and
 *    all) against `qkscope embed MODEL PHOTOS --layers 11` on the same photos, each a child
 *    process from spawn to exit, interleaved, 3 rounds. Target: scan throughput ≥ 0.9 × embed's.
 *    Peak RSS of the scan (target < 1.5 GB).
 * 2. In the loop: the scan's image loop (its own timing) against a forward-only loop (the same
 *    batch loop and runtime, the model only) over the same images, in this process, interleaved.
 *    Target ≥ 0.95.
 * 3. With QKSCOPE_BENCH_FULL=1: peak RSS of a scan of 1 000 vs 5 000 small images (a ViT-Ti shape
 *    at 112 px): memory must not grow with the number of images (target within 10 %).
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadSpec } from '../src/arch/load.js';
import { preprocessFor } from '../src/images/preprocess.js';
import { ListingSource } from '../src/images/source.js';
import { fileListing, listImages } from '../src/images/sources.js';
import { imageBatches } from '../src/runtime/batch-loop.js';
import { VitRuntime } from '../src/runtime/vit-runtime.js';
import { scanIntoDir } from '../src/jobs/scan.js';
import { VIT_B16, writeSyntheticTimm, type VitSize } from './synthetic-checkpoint.js';
import { load1, runCli, spread, type Spread } from './measure.js';

const VIT_TI16_112: VitSize = { arch: 'vit_tiny_patch16_224', layers: 12, width: 192, heads: 3, patch: 16, image: 112, mlp: 768, classes: 1000 };
const SHARED = new URL('../../../shared/images/imagenet-sample/', import.meta.url).pathname;

export interface ScanBenchResult {
  photos: string;
  images: number;
  commands: {
    scanWall: Spread;
    embedWall: Spread;
    /** embed wall / scan wall, best rounds: scan's throughput ÷ embed's (target ≥ 0.9). */
    ratio: number;
    scanPeakRssMB: number;
    embedPeakRssMB: number;
    load: [number, number];
  };
  loop: {
    scanImagesPerSec: Spread;
    forwardImagesPerSec: Spread;
    /** best scan loop ÷ best forward-only loop (target ≥ 0.95). */
    ratio: number;
    timing: { waitImages: number; forward: number; lists: number; commit: number };
  };
  memory: { counts: [number, number]; peakRssMB: [number, number]; ratio: number } | null;
}

async function writeJpegs(dir: string, n: number, w: number, h: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) {
    const data = Buffer.alloc(w * h * 3);
    let s = 1234 + i;
    for (let k = 0; k < data.length; k++) {
      s = (s * 1103515245 + 12345) & 0x7fffffff;
      data[k] = (((k / 3) % w) * 255) / w + (s & 63);
    }
    await sharp(data, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(dir, `img${String(i).padStart(5, '0')}.jpg`));
  }
}

/** 64 photos: the shared ImageNet sample when present, else generated 500×375 JPEGs. */
async function photos(root: string, n = 64): Promise<{ files: string[]; kind: string }> {
  if (existsSync(SHARED)) {
    const files = readdirSync(SHARED).filter((f) => f.endsWith('.JPEG')).sort().slice(0, n).map((f) => join(SHARED, f));
    if (files.length === n) return { files, kind: `${n} ImageNet photos (../shared)` };
  }
  const dir = join(root, 'photos');
  await writeJpegs(dir, n, 500, 375);
  return { files: readdirSync(dir).sort().map((f) => join(dir, f)), kind: `${n} generated 500×375 JPEGs` };
}

export async function benchScan(): Promise<ScanBenchResult> {
  const root = mkdtempSync(join(tmpdir(), 'qkscope-bench-scan-'));
  try {
    const model = join(root, 'vit-b16');
    writeSyntheticTimm(model, VIT_B16);
    const { files, kind } = await photos(root);
    const list = join(root, 'photos.txt');
    (await import('node:fs')).writeFileSync(list, files.join('\n') + '\n');

    // 1. Whole commands, interleaved.
    const scanWall: number[] = [];
    const embedWall: number[] = [];
    let scanRss = 0;
    let embedRss = 0;
    const l0 = load1();
    for (let r = 0; r < 3; r++) {
      const e = runCli(['embed', model, ...files, '--layers', '11', '--out', join(root, `emb-${r}`)]);
      embedWall.push(e.wallS);
      embedRss = Math.max(embedRss, e.peakRssMB);
      const s = runCli(['scan', model, list, '--top', '8', '--out', join(root, `scan-${r}`)]);
      scanWall.push(s.wallS);
      scanRss = Math.max(scanRss, s.peakRssMB);
      rmSync(join(root, `emb-${r}`), { recursive: true, force: true });
      rmSync(join(root, `scan-${r}`), { recursive: true, force: true });
    }
    const commands = {
      scanWall: spread(scanWall),
      embedWall: spread(embedWall),
      ratio: Math.min(...embedWall) / Math.min(...scanWall),
      scanPeakRssMB: scanRss,
      embedPeakRssMB: embedRss,
      load: [l0, load1()] as [number, number],
    };

    // 2. The loops, in this process: the scan's image loop vs the same images through the model only.
    const { spec, close } = await loadSpec(model, {});
    const scanRates: number[] = [];
    const fwdRates: number[] = [];
    let timing = { waitImages: 0, forward: 0, lists: 0, commit: 0 };
    try {
      const listing = await listImages([list]);
      const { pp, options } = preprocessFor(spec);
      const fwd = await VitRuntime.create(spec, { outputs: { ln: [spec.layers - 1] } });
      try {
        for (let r = 0; r < 3; r++) {
          const t0 = performance.now();
          let n = 0;
          for await (const b of imageBatches(new ListingSource(fileListing(files), pp, options))) {
            await fwd.run(b.pixels, b.items.length);
            n += b.items.length;
          }
          fwdRates.push(n / ((performance.now() - t0) / 1000));
          const s = await scanIntoDir(spec, join(root, `loop-${r}`), { listing, inputs: [list], modelInput: model, figures: false }, { topK: 8 });
          scanRates.push(s.imagesPerSec);
          if (s.imagesPerSec >= Math.max(...scanRates)) timing = s.timing;
          rmSync(join(root, `loop-${r}`), { recursive: true, force: true });
        }
      } finally {
        await fwd.close();
      }
    } finally {
      await close();
    }
    const loop = { scanImagesPerSec: spread(scanRates), forwardImagesPerSec: spread(fwdRates), ratio: Math.max(...scanRates) / Math.max(...fwdRates), timing };

    // 3. Memory against the number of images (long: on request).
    let memory: ScanBenchResult['memory'] = null;
    if (process.env.QKSCOPE_BENCH_FULL === '1') {
      const tiny = join(root, 'vit-ti');
      writeSyntheticTimm(tiny, VIT_TI16_112);
      const counts: [number, number] = [1000, 5000];
      await writeJpegs(join(root, 'small'), counts[1], 48, 40);
      const all = readdirSync(join(root, 'small')).sort().map((f) => join(root, 'small', f));
      const rss: number[] = [];
      for (const c of counts) {
        const l = join(root, `small-${c}.txt`);
        (await import('node:fs')).writeFileSync(l, all.slice(0, c).join('\n') + '\n');
        rss.push(runCli(['scan', tiny, l, '--top', '8', '--no-figures', '--out', join(root, `mem-${c}`)]).peakRssMB);
      }
      memory = { counts, peakRssMB: [rss[0], rss[1]], ratio: rss[1] / rss[0] };
    }
    return { photos: kind, images: files.length, commands, loop, memory };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
