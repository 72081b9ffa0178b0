/**
 * `scan` benchmark (issue 4):
 *
 * 1. Throughput: `qkscope scan`'s image loop against a forward-only pass (the `embed` pipeline:
 *    decode + preprocess with prefetch, then the model with logits only, nothing written) on the
 *    same generated images and the same generated ViT-B/16 timm checkpoint, in the same run,
 *    interleaved (forward, scan, forward, scan; best of each; 96 images, batch 16). Target:
 *    scan / forward ≥ 0.9.
 *    Reported per wall second (the target) and per CPU second (informative only: it counts
 *    onnxruntime's threads spinning while the scan's JS updates its lists).
 * 2. Memory: peak RSS of a scan of 1 000 vs 5 000 images (child processes, fresh RSS), with a
 *    ViT-Ti/16-shaped checkpoint (d = 192, 12 layers, 3 heads) at 112×112 px and 48×40 px
 *    generated JPEGs, so 5 000 images take about a minute on 2 cores. Target: within 10 %.
 *
 *   node dist/bench/scan.js            (or call benchScan() from the bench runner)
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import type { VitSpec } from '../src/arch/spec.js';
import { preprocessFor } from '../src/images/preprocess.js';
import { VitRuntime } from '../src/runtime/vit-runtime.js';
import { runScan } from '../src/jobs/scan.js';
import { listImages } from '../src/images/sources.js';
import { VIT_B16, writeSyntheticTimm, type VitSize } from './synthetic-checkpoint.js';
import { loadSpec } from '../src/arch/load.js';
import { ImageFiles } from '../src/images/source.js';

const VIT_TI16_112: VitSize = { arch: 'vit_tiny_patch16_224', layers: 12, width: 192, heads: 3, patch: 16, image: 112, mlp: 768, classes: 1000 };

export interface ScanBenchResult {
  throughput: {
    model: string;
    images: number;
    batch: number;
    forwardImagesPerSec: number;
    scanImagesPerSec: number;
    /** scan / forward, wall time (target >= 0.9). */
    ratio: number;
    forwardImagesPerCpuSec: number;
    scanImagesPerCpuSec: number;
    /** scan / forward per CPU second. */
    cpuRatio: number;
    routes: string[];
    rounds: { forward: number; scan: number }[];
    /** Seconds of the best scan round: waiting for images, forward pass (+ in-graph projections), list updates, commits. */
    scanTiming: { waitImages: number; forward: number; lists: number; commit: number };
  } | null;
  memory: {
    model: string;
    imageSize: number;
    counts: [number, number];
    peakRssMB: [number, number];
    /** RSS(5000) / RSS(1000) (target <= 1.10). */
    ratio: number;
    imagesPerSec: [number, number];
  } | null;
}

function xorshift(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

async function writeJpegs(dir: string, n: number, w: number, h: number, seed = 1): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const paths: string[] = [];
  const rnd = xorshift(seed);
  for (let i = 0; i < n; i++) {
    const data = Buffer.alloc(w * h * 3);
    const cx = rnd() * w;
    const cy = rnd() * h;
    const col = [rnd() * 255, rnd() * 255, rnd() * 255];
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const inside = (x - cx) ** 2 + (y - cy) ** 2 < (w * h) / 12;
        for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = inside ? col[c] : (x * 7 + y * 13 + c * 50 + i) & 255;
      }
    const p = join(dir, `img${String(i).padStart(5, '0')}.jpg`);
    await sharp(data, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(p);
    paths.push(p);
  }
  return paths;
}

/** The `embed` loop without its outputs: decode + preprocess (prefetched) and a logits-only forward pass. */
async function forwardOnly(spec: VitSpec, paths: string[], batch: number, threads?: number): Promise<{ perSec: number; perCpuSec: number }> {
  const { pp, options } = preprocessFor(spec);
  const source = new ImageFiles(paths, pp, options);
  const rt = await VitRuntime.create(spec, { outputs: { logits: true }, threads });
  try {
    const N = source.count;
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    let next: Promise<Float32Array> | null = source.read(0, Math.min(batch, N));
    for (let start = 0; start < N; start += batch) {
      const n = Math.min(batch, N - start);
      const px = await next!;
      next = start + batch < N ? source.read(start + batch, Math.min(batch, N - start - batch)) : null;
      await rt.run(px, n);
    }
    const sec = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    return { perSec: N / sec, perCpuSec: N / ((c.user + c.system) / 1e6) };
  } finally {
    await rt.close();
  }
}

export async function benchScan(opts: { images?: number; batch?: number; rounds?: number; rssCounts?: [number, number]; threads?: number; throughput?: boolean; memory?: boolean } = {}): Promise<ScanBenchResult> {
  const root = mkdtempSync(join(tmpdir(), 'qkscope-bench-scan-'));
  const result: ScanBenchResult = { throughput: null, memory: null };
  try {
    if (opts.throughput !== false) {
      const nImages = opts.images ?? 96;
      const batch = opts.batch ?? 16;
      const modelDir = join(root, 'vit-b16');
      writeSyntheticTimm(modelDir, VIT_B16);
      const paths = await writeJpegs(join(root, 'imgs-b16'), nImages, 320, 240);
      const listing = await listImages([join(root, 'imgs-b16')]);
      const rounds: { forward: number; scan: number; forwardCpu: number; scanCpu: number; timing: { waitImages: number; forward: number; lists: number; commit: number } }[] = [];
      let routes: string[] = [];
      // Interleaved rounds (forward, scan, forward, scan, ...): load from other processes hits both alike.
      for (let r = 0; r < (opts.rounds ?? 2); r++) {
        const { spec, close } = await loadSpec(modelDir, {});
        try {
          const f = await forwardOnly(spec, paths, batch, opts.threads);
          const s = await runScan(spec, { outDir: join(root, `scan-${r}`), listing, inputs: [], modelInput: modelDir, batch, threads: opts.threads });
          routes = s.routes;
          rounds.push({ forward: f.perSec, scan: s.imagesPerSec, forwardCpu: f.perCpuSec, scanCpu: s.session / s.loopCpuSeconds, timing: s.timing });
        } finally {
          await close();
        }
      }
      const best = (k: 'forward' | 'scan' | 'forwardCpu' | 'scanCpu') => Math.max(...rounds.map((x) => x[k]));
      result.throughput = {
        model: `${VIT_B16.arch} (generated weights), ${nImages} generated 320x240 JPEGs`,
        images: nImages,
        batch,
        forwardImagesPerSec: best('forward'),
        scanImagesPerSec: best('scan'),
        ratio: best('scan') / best('forward'),
        forwardImagesPerCpuSec: best('forwardCpu'),
        scanImagesPerCpuSec: best('scanCpu'),
        cpuRatio: best('scanCpu') / best('forwardCpu'),
        routes,
        rounds: rounds.map((x) => ({ forward: x.forward, scan: x.scan })),
        scanTiming: rounds.reduce((a, b) => (b.scan > a.scan ? b : a)).timing,
      };
    }
    if (opts.memory !== false) {
      const [a, b] = opts.rssCounts ?? [1000, 5000];
      const modelDir = join(root, 'vit-ti16-112');
      writeSyntheticTimm(modelDir, VIT_TI16_112);
      const dir = join(root, 'imgs-small');
      const paths = await writeJpegs(dir, b, 48, 40, 7);
      const rss: number[] = [];
      const rates: number[] = [];
      for (const n of [a, b]) {
        const list = join(root, `list-${n}.txt`);
        writeFileSync(list, paths.slice(0, n).join('\n') + '\n');
        const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--rss-child', modelDir, list, join(root, `rss-${n}`)], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`scan of ${n} images failed: ${r.stderr}`);
        const m = JSON.parse(r.stdout.trim().split('\n').pop()!);
        rss.push(m.maxRssKB / 1024);
        rates.push(m.imagesPerSec);
      }
      result.memory = { model: 'ViT-Ti/16 shape (d=192, 12 layers, 3 heads, generated weights) at 112x112', imageSize: 112, counts: [a, b], peakRssMB: [rss[0], rss[1]], ratio: rss[1] / rss[0], imagesPerSec: [rates[0], rates[1]] };
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return result;
}

/** Child: one scan, then its peak RSS as JSON on stdout. */
async function rssChild(modelDir: string, list: string, out: string): Promise<void> {
  const { spec, close } = await loadSpec(modelDir, {});
  try {
    const listing = await listImages([list]);
    const r = await runScan(spec, { outDir: out, listing, inputs: [list], modelInput: modelDir, batch: 32 });
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage();
    process.stdout.write(JSON.stringify({ images: r.done, imagesPerSec: r.imagesPerSec, maxRssKB: process.resourceUsage().maxRSS, rssMB: m.rss / 2 ** 20, heapUsedMB: m.heapUsed / 2 ** 20, heapTotalMB: m.heapTotal / 2 ** 20, externalMB: m.external / 2 ** 20 }) + '\n');
  } finally {
    await close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === '--rss-child') {
    rssChild(process.argv[3], process.argv[4], process.argv[5]).catch((e) => {
      console.error(e);
      process.exitCode = 1;
    });
  } else {
    const which = process.argv[2];
    benchScan({ throughput: which !== 'memory', memory: which !== 'throughput' }).then(
      (r) => console.log(JSON.stringify(r, null, 2)),
      (e) => {
        console.error(e);
        process.exitCode = 1;
      },
    );
  }
}
