/**
 * Runtime benchmark: ViT-B/16 (random weights) at batch 8 on this machine, against the
 * machine's own fp32 matmul rate measured in the same run (one onnxruntime MatMul
 * [2048, 768] x [768, 3072]). Reports images/s, achieved model FLOP/s ÷ matmul FLOP/s
 * (target >= 0.65), peak RSS (target < 2 GB) and the cost of asking for `ln` of all layers
 * (target <= 10 %).
 *
 *   node dist/bench/embed.js            (or call benchEmbed() from the bench runner)
 */
import { pathToFileURL } from 'node:url';
import ort from 'onnxruntime-node';
import type { TensorInfo, TensorSource } from '../src/checkpoint/types.js';
import type { BlockSpec, LinearSpec, NormSpec, VitSpec, WeightRef } from '../src/arch/spec.js';
import { OnnxGraph } from '../src/runtime/onnx-graph.js';
import { VitRuntime } from '../src/runtime/vit-runtime.js';
import type { VitOutputs } from '../src/runtime/vit-graph.js';

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

/** fp32 GFLOP/s of one onnxruntime MatMul [2048, 768] x [768, 3072] (weights as an initializer). */
export async function matmulRate(threads?: number, seconds = 3): Promise<Rate> {
  const M = 2048;
  const K = 768;
  const N = 3072;
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

async function imagesPerSecond(spec: VitSpec, outputs: VitOutputs, batch: number, threads: number | undefined, seconds: number) {
  const t0 = performance.now();
  const rt = await VitRuntime.create(spec, { outputs, threads });
  const createSec = (performance.now() - t0) / 1000;
  const [h, w] = spec.imageSize;
  const pixels = new Float32Array(batch * 3 * h * w).map((_, i) => Math.sin(i * 0.001));
  await rt.run(pixels, batch); // warm-up
  const t = await timed(() => rt.run(pixels, batch), seconds, 2);
  const flops = rt.flopsPerImage;
  await rt.close();
  return { imagesPerSec: (t.reps * batch) / t.wall, imagesPerCpuSec: (t.reps * batch) / t.cpu, flopsPerImage: flops, createSec };
}

export interface EmbedBenchResult {
  model: string;
  batch: number;
  threads: number | 'default';
  /** Logits only. */
  imagesPerSec: number;
  /** Model GFLOP per image (2 x multiply-adds: linears, q·k, attention·v, patch conv). */
  gflopPerImage: number;
  achievedGflops: number;
  /** The machine's fp32 matmul rate, best of two measurements around the model runs. */
  matmulGflops: number;
  /** achieved / matmul, wall clock; target >= 0.65. */
  efficiency: number;
  /** The same ratio per CPU second of this process (less sensitive to other load). */
  cpuEfficiency: number;
  /** Images/s asking for ln of all layers (+ logits). */
  imagesPerSecLnAll: number;
  /** 1 - lnAll / logitsOnly (wall clock); target <= 0.10. */
  lnAllOverhead: number;
  /** The same per CPU second. */
  lnAllCpuOverhead: number;
  /** Session build time (graph + onnxruntime), seconds. */
  createSec: number;
  /** Peak resident memory of this process, MB; target < 2000. */
  peakRssMB: number;
}

export async function benchEmbed(opts: { batch?: number; threads?: number; seconds?: number } = {}): Promise<EmbedBenchResult> {
  const batch = opts.batch ?? 8;
  const seconds = opts.seconds ?? 8;
  const spec = randomVitB16();
  const mm1 = await matmulRate(opts.threads);
  // A-B-A: logits only, ln of all layers, logits only again (load on the machine drifts).
  const a1 = await imagesPerSecond(spec, { logits: true }, batch, opts.threads, seconds / 2);
  const ln = await imagesPerSecond(spec, { ln: 'all', logits: true }, batch, opts.threads, seconds);
  const a2 = await imagesPerSecond(spec, { logits: true }, batch, opts.threads, seconds / 2);
  const base = {
    imagesPerSec: (a1.imagesPerSec + a2.imagesPerSec) / 2,
    imagesPerCpuSec: (a1.imagesPerCpuSec + a2.imagesPerCpuSec) / 2,
    flopsPerImage: a1.flopsPerImage,
    createSec: a1.createSec,
  };
  const mm2 = await matmulRate(opts.threads);
  const matmul = Math.max(mm1.wall, mm2.wall);
  const matmulCpu = Math.max(mm1.cpu, mm2.cpu);
  const gflop = base.flopsPerImage / 1e9;
  const achieved = base.imagesPerSec * gflop;
  return {
    model: spec.modelId,
    batch,
    threads: opts.threads ?? 'default',
    imagesPerSec: base.imagesPerSec,
    gflopPerImage: gflop,
    achievedGflops: achieved,
    matmulGflops: matmul,
    efficiency: achieved / matmul,
    cpuEfficiency: (base.imagesPerCpuSec * gflop) / matmulCpu,
    imagesPerSecLnAll: ln.imagesPerSec,
    lnAllOverhead: 1 - ln.imagesPerSec / base.imagesPerSec,
    lnAllCpuOverhead: 1 - ln.imagesPerCpuSec / base.imagesPerCpuSec,
    createSec: base.createSec,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
  };
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
