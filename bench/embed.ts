/**
 * `embed` benchmark, ViT-B/16 at batch 8 on this machine:
 *
 * 1. The whole `qkscope embed` command (child process) on generated JPEGs with a random timm
 *    ViT-B/16 checkpoint (bench/synthetic-checkpoint.ts), `--layers 11 --batch 8`: its own
 *    images/s (decode, preprocess, forward, writing) × model GFLOP per image, against the
 *    machine's fp32 GEMM rate measured in the same rounds: numpy `a @ b` on 2048² float32 with
 *    2 threads (target >= 0.85), and onnxruntime's MatMul on the same shape (MLAS, the kernels
 *    the model runs on). Which BLAS numpy uses is reported: Debian's reference BLAS is a
 *    single-threaded triple loop, so a ratio against it says little about the forward pass.
 * 2. In-process forward pass only (logits), fused attention kernel vs plain nodes
 *    (`unfused: 'all'`), interleaved A-B-A-B, and the cost of asking for `ln` of all layers.
 *
 *   node dist/bench/embed.js            (or call benchEmbed() from the bench runner)
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import ort from 'onnxruntime-node';
import type { TensorInfo, TensorSource } from '../src/checkpoint/types.js';
import type { BlockSpec, LinearSpec, NormSpec, VitSpec, WeightRef } from '../src/arch/spec.js';
import { OnnxGraph } from '../src/runtime/onnx-graph.js';
import { VitRuntime } from '../src/runtime/vit-runtime.js';
import { buildVitGraph, type VitOutputs } from '../src/runtime/vit-graph.js';
import { loadSpec } from '../src/arch/load.js';
import { VIT_B16, writeSyntheticTimm } from './synthetic-checkpoint.js';
import { PY_BLAS_NAMES, load1, numpyMissing, python, runCli, spread, type Spread } from './measure.js';

/** Deterministic random weights generated on read (nothing held in memory). */
class RandomSource implements TensorSource {
  readonly location = '<random ViT-B/16>';
  private shapes = new Map<string, { shape: number[]; scale: number; offset: number }>();
  add(name: string, shape: number[], scale: number, offset = 0): WeightRef {
    this.shapes.set(name, { shape, scale, offset });
    return { source: this, name, shape };
  }
  names(): string[] {
    return [...this.shapes.keys()];
  }
  info(name: string): TensorInfo | undefined {
    const s = this.shapes.get(name);
    return s && { name, dtype: 'F32', shape: s.shape };
  }
  async read(name: string, r0?: number, r1?: number): Promise<Float32Array> {
    const s = this.shapes.get(name)!;
    const rows = s.shape[0];
    const rowLen = s.shape.reduce((a, b) => a * b, 1) / rows;
    const a = r0 ?? 0;
    const b = r1 ?? rows;
    const out = new Float32Array((b - a) * rowLen);
    let h = 2166136261;
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
    let x = (h ^ (a * 2654435761)) >>> 0 || 1;
    for (let i = 0; i < out.length; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      out[i] = s.offset + (x / 4294967296 - 0.5) * 2 * s.scale;
    }
    return out;
  }
  async close(): Promise<void> {}
}

/** A ViT-B/16 (HF google/vit-base-patch16-224 shapes) with random weights. */
export function randomVitB16(): VitSpec {
  const d = 768;
  const hidden = 3072;
  const src = new RandomSource();
  const lin = (n: string, out: number, inn: number): LinearSpec => ({ weight: src.add(`${n}.weight`, [out, inn], 1 / Math.sqrt(inn)), bias: src.add(`${n}.bias`, [out], 0.02) });
  const norm = (n: string): NormSpec => ({ kind: 'layernorm', weight: src.add(`${n}.weight`, [d], 0.1, 1), bias: src.add(`${n}.bias`, [d], 0.02), eps: 1e-12 });
  const blocks: BlockSpec[] = [];
  for (let l = 0; l < 12; l++) {
    const k = `blocks.${l}`;
    blocks.push({
      norm1: norm(`${k}.norm1`),
      q: lin(`${k}.q`, d, d),
      k: lin(`${k}.k`, d, d),
      v: lin(`${k}.v`, d, d),
      o: lin(`${k}.o`, d, d),
      norm2: norm(`${k}.norm2`),
      mlp: { kind: 'mlp', fc1: lin(`${k}.fc1`, hidden, d), fc2: lin(`${k}.fc2`, d, hidden) },
    });
  }
  return {
    family: 'hf-vit',
    modelId: 'random-vit-base-patch16-224',
    modality: 'vision',
    imageSize: [224, 224],
    patchSize: 16,
    channels: 3,
    width: d,
    heads: 12,
    headDim: 64,
    kvHeads: 12,
    layers: 12,
    tokenLayout: ['cls'],
    patchEmbed: { kind: 'conv', weight: src.add('patch.weight', [d, 3, 16, 16], 0.05), bias: src.add('patch.bias', [d], 0.02) },
    clsToken: src.add('cls', [1, 1, d], 0.02),
    posEmbed: { weight: src.add('pos', [197, d], 0.02), grid: [14, 14], special: 1 },
    blocks,
    finalNorm: norm('final'),
    pooling: 'cls',
    head: lin('head', 1000, d),
    activation: 'gelu',
  };
}

interface Rate {
  /** Per wall-clock second. */
  wall: number;
  /** Per CPU second of this process (robust to other load on the machine; counts spinning threads). */
  cpu: number;
}

async function timed(run: () => Promise<unknown>, seconds: number, minReps: number): Promise<{ reps: number; wall: number; cpu: number }> {
  let reps = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000 || reps < minReps) {
    await run();
    reps++;
  }
  const c = process.cpuUsage(c0);
  return { reps, wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

/** fp32 GFLOP/s of one onnxruntime MatMul [M, K] x [K, N] (weights as an initializer), default [2048, 768] x [768, 3072]. */
export async function matmulRate(threads?: number, seconds = 3, [M, K, N]: [number, number, number] = [2048, 768, 3072]): Promise<Rate> {
  const g = new OnnxGraph('matmul');
  const a = g.input('a', [M, K]);
  const w = new Float32Array(K * N).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  g.output('y', g.matmul(a, g.init('w', [K, N], w)));
  const s = await ort.InferenceSession.create(await g.encode(), {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    interOpNumThreads: 1,
    ...(threads ? { intraOpNumThreads: threads } : {}),
  });
  const feeds = { a: new ort.Tensor('float32', new Float32Array(M * K).map((_, i) => ((i * 40503) % 997) / 997 - 0.5), [M, K]) };
  await s.run(feeds);
  const t = await timed(() => s.run(feeds), seconds, 3);
  await s.release();
  const flop = 2 * M * K * N * t.reps;
  return { wall: flop / t.wall / 1e9, cpu: flop / t.cpu / 1e9 };
}

const NUMPY_GEMM = `
import sys, json, time, os
import numpy as np
${PY_BLAS_NAMES}
n, seconds = int(sys.argv[1]), float(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.random((n, n), dtype=np.float32)
b = rng.random((n, n), dtype=np.float32)
a @ b
best, reps, t0 = float('inf'), 0, time.perf_counter()
while time.perf_counter() - t0 < seconds or reps < 2:
    t = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - t)
    reps += 1
print(json.dumps({'gflops': 2 * n ** 3 / best / 1e9, 'reps': reps, 'blas': blas_names()}))
`;

async function imagesPerSecond(spec: VitSpec, outputs: VitOutputs, batch: number, threads: number | undefined, seconds: number, unfused?: 'all') {
  const rt = await VitRuntime.create(spec, { outputs, threads, unfused });
  const [h, w] = spec.imageSize;
  const pixels = new Float32Array(batch * 3 * h * w).map((_, i) => Math.sin(i * 0.001));
  await rt.run(pixels, batch); // warm-up
  const t = await timed(() => rt.run(pixels, batch), seconds, 2);
  await rt.close();
  return { imagesPerSec: (t.reps * batch) / t.wall, imagesPerCpuSec: (t.reps * batch) / t.cpu };
}

/** `count` JPEGs (256×256, smooth colours plus noise) for the whole-command runs. */
async function writeImages(dir: string, count: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const W = 256;
  for (let k = 0; k < count; k++) {
    const rgb = Buffer.alloc(W * W * 3);
    let x = (k + 1) * 2654435761;
    for (let i = 0; i < W * W; i++) {
      x = (x ^ (x << 13)) >>> 0;
      x = (x ^ (x >>> 17)) >>> 0;
      x = (x ^ (x << 5)) >>> 0;
      const r = Math.floor(i / W), c = i % W;
      rgb[3 * i] = (r + k * 7) & 255;
      rgb[3 * i + 1] = (c * 2 + (x & 31)) & 255;
      rgb[3 * i + 2] = ((r ^ c) + k) & 255;
    }
    await sharp(rgb, { raw: { width: W, height: W, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(dir, `img${String(k).padStart(3, '0')}.jpg`));
  }
}

export interface EmbedBenchResult {
  model: string;
  batch: number;
  images: number;
  /** Model GFLOP per image (2 x multiply-adds: linears, q·k, attention·v, patch conv). */
  gflopPerImage: number;
  /** The command's own images/s (its summary line), per run. */
  commandImagesPerSec: Spread;
  /** Spawn to exit, per run. */
  commandWall: Spread;
  commandPeakRssMB: number;
  /** Best command images/s × GFLOP per image. */
  achievedGflops: number;
  /** numpy 2048² float32 GEMM, 2 threads, best per round (null when numpy is unavailable). */
  numpyGemm: { gflops: Spread; blas: string[] } | { unavailable: string };
  /** onnxruntime MatMul 2048² (2 threads), best per round. */
  ortGemmGflops: Spread;
  /** Per round (the same moment on the shared machine): command GFLOP/s ÷ numpy GEMM GFLOP/s; target >= 0.85. */
  ratioNumpy: Spread | null;
  /** Per round: command GFLOP/s ÷ onnxruntime MatMul 2048² GFLOP/s. */
  ratioOrt: Spread;
  /** In-process forward (logits only), images/s: fused attention and plain nodes, interleaved; gains per pair. */
  forward: { fused: Spread; plain: Spread; fusedGain: Spread; fusedCpuGain: Spread };
  /** 1 - images/s with ln of all layers / logits only (fused), informative. */
  lnAllOverhead: number;
  load: [number, number];
}

export async function benchEmbed(opts: { batch?: number; images?: number; rounds?: number; threads?: number; seconds?: number } = {}): Promise<EmbedBenchResult> {
  const batch = opts.batch ?? 8;
  const count = opts.images ?? 48;
  const rounds = opts.rounds ?? Number(process.env.QKSCOPE_BENCH_REPEATS ?? 3);
  const seconds = opts.seconds ?? 4;
  const load0 = load1();
  const root = mkdtempSync(join(tmpdir(), 'qkscope-bench-embed-'));
  try {
    const modelDir = join(root, 'vit-b16');
    writeSyntheticTimm(modelDir, VIT_B16);
    const imgDir = join(root, 'images');
    await writeImages(imgDir, count);
    const { spec: ckptSpec, close } = await loadSpec(modelDir, {});
    const gflop = (await buildVitGraph(ckptSpec, { outputs: { logits: true } })).flopsPerImage / 1e9;
    await close();
    const missing = numpyMissing();
    const cmdRate: number[] = [];
    const cmdWall: number[] = [];
    let rss = 0;
    const npRates: number[] = [];
    let blas: string[] = [];
    const ortRates: number[] = [];
    const args = ['embed', modelDir, imgDir, '--layers', '11', '--batch', String(batch), ...(opts.threads ? ['--threads', String(opts.threads)] : [])];
    runCli([...args, '--out', join(root, 'warm')]);
    for (let r = 0; r < rounds; r++) {
      if (!missing) {
        const ref = python<{ gflops: number; blas: string[] }>(NUMPY_GEMM, ['2048', String(seconds)], { OMP_NUM_THREADS: '2', OPENBLAS_NUM_THREADS: '2', MKL_NUM_THREADS: '2' });
        npRates.push(ref.gflops);
        blas = ref.blas;
      }
      ortRates.push((await matmulRate(opts.threads ?? 2, seconds, [2048, 2048, 2048])).wall);
      const out = join(root, `out${r}`);
      const run = runCli([...args, '--out', out]);
      const m = /\(([\d.]+) images\/s\)/.exec(run.stdout);
      if (!m) throw new Error(`embed printed no images/s: ${run.stdout}`);
      cmdRate.push(Number(m[1]));
      cmdWall.push(run.wallS);
      rss = Math.max(rss, run.peakRssMB);
      rmSync(out, { recursive: true, force: true });
    }
    // In-process forward only: fused vs plain attention, A-B-A-B; then ln of all layers.
    const spec = randomVitB16();
    const fused: number[] = [], plain: number[] = [], fusedCpu: number[] = [], plainCpu: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const f = await imagesPerSecond(spec, { logits: true }, batch, opts.threads, seconds);
      const p = await imagesPerSecond(spec, { logits: true }, batch, opts.threads, seconds, 'all');
      fused.push(f.imagesPerSec);
      fusedCpu.push(f.imagesPerCpuSec);
      plain.push(p.imagesPerSec);
      plainCpu.push(p.imagesPerCpuSec);
    }
    const lnAll = await imagesPerSecond(spec, { ln: 'all', logits: true }, batch, opts.threads, seconds);
    const fusedAfter = await imagesPerSecond(spec, { logits: true }, batch, opts.threads, seconds);
    const cmd = spread(cmdRate, true);
    const achieved = cmd.best * gflop;
    const np = npRates.length ? spread(npRates, true) : null;
    const ortG = spread(ortRates, true);
    const perRound = (ref: number[]) => spread(cmdRate.map((x, r) => (x * gflop) / ref[r]), true);
    return {
      model: 'random timm vit_base_patch16_224',
      batch,
      images: count,
      gflopPerImage: gflop,
      commandImagesPerSec: cmd,
      commandWall: spread(cmdWall),
      commandPeakRssMB: rss,
      achievedGflops: achieved,
      numpyGemm: np ? { gflops: np, blas } : { unavailable: missing! },
      ortGemmGflops: ortG,
      ratioNumpy: np ? perRound(npRates) : null,
      ratioOrt: perRound(ortRates),
      forward: {
        fused: spread(fused, true),
        plain: spread(plain, true),
        fusedGain: spread(fused.map((f, r) => f / plain[r] - 1), true),
        fusedCpuGain: spread(fusedCpu.map((f, r) => f / plainCpu[r] - 1), true),
      },
      lnAllOverhead: 1 - lnAll.imagesPerSec / ((fused[fused.length - 1] + fusedAfter.imagesPerSec) / 2),
      load: [load0, load1()],
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchEmbed().then(
    (r) => console.log(JSON.stringify(r, null, 2)),
    (e) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
