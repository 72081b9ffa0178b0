/**
 * Timing of the weight-only analysis (thin SVD of every head) on synthetic Gaussian weights of
 * a given size. `node dist/bench/modes-kernel.js [vitb|vith|all] [threads]`.
 * The anchor from the brief: numpy thin QR + small SVD takes 2.5 s (ViT-B/16) / 17 s (ViT-H/14).
 */
import { analyzeModel } from '../src/analysis/model-modes.js';
import { syntheticSpec } from '../src/analysis/synthetic.js';
import { headModes } from '../src/analysis/modes.js';

export interface ModesBenchConfig {
  name: string;
  layers: number;
  heads: number;
  headDim: number;
  width: number;
}

export const VIT_B16: ModesBenchConfig = { name: 'ViT-B/16', layers: 12, heads: 12, headDim: 64, width: 768 };
export const VIT_H14: ModesBenchConfig = { name: 'ViT-H/14', layers: 32, heads: 16, headDim: 80, width: 1280 };

export interface ModesBenchResult {
  name: string;
  threads: number;
  heads: number;
  /** Wall time of analyzeModel (worker start-up included, weight generation excluded). */
  seconds: number;
  /** CPU seconds of the whole process (all threads) during the run: wall ≈ cpu/threads on an idle machine. */
  cpuSeconds: number;
  /** Mean Jacobi sweeps per head. */
  sweeps: number;
  paths: Record<string, number>;
}

export async function benchModes(cfg: ModesBenchConfig, threads: number, seed = 7): Promise<ModesBenchResult> {
  const { spec } = syntheticSpec({ layers: cfg.layers, heads: cfg.heads, headDim: cfg.headDim, width: cfg.width, seed });
  let sweeps = 0, n = 0;
  const paths: Record<string, number> = {};
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await analyzeModel(spec, {
    threads,
    onLayer: (_l, heads) => {
      for (const h of heads) {
        n++;
        sweeps += h.numerics?.sweeps ?? 0;
        const k = `${h.numerics?.qPath}/${h.numerics?.kPath}`;
        paths[k] = (paths[k] ?? 0) + 1;
      }
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  const cu = process.cpuUsage(c0);
  const cpuSeconds = (cu.user + cu.system) / 1e6;
  return { name: cfg.name, threads, heads: n, seconds, cpuSeconds, sweeps: sweeps / n, paths };
}

/** Single-thread per-head time in ms (after warm-up), the kernel cost without any pool. */
export function benchOneHead(cfg: ModesBenchConfig, reps = 20): number {
  const { width: d, headDim: dh } = cfg;
  const wq = new Float32Array(dh * d).map(() => Math.random() - 0.5);
  const wk = new Float32Array(dh * d).map(() => Math.random() - 0.5);
  for (let i = 0; i < 3; i++) headModes(wq, wk, null, d, dh, 0, 0);
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) headModes(wq, wk, null, d, dh, 0, 0);
  return (performance.now() - t0) / reps;
}

async function main(): Promise<void> {
  const which = process.argv[2] ?? 'all';
  const threads = process.argv[3] ? Number(process.argv[3]) : undefined;
  const cfgs = which === 'vitb' ? [VIT_B16] : which === 'vith' ? [VIT_H14] : [VIT_B16, VIT_H14];
  for (const cfg of cfgs) {
    console.log(`${cfg.name}: one head, 1 thread: ${benchOneHead(cfg).toFixed(2)} ms`);
    for (const t of threads ? [threads] : [1, 2]) {
      const r = await benchModes(cfg, t);
      console.log(
        `${r.name}: ${r.heads} heads, threads=${r.threads}: ${r.seconds.toFixed(3)} s wall, ${r.cpuSeconds.toFixed(3)} s cpu, ${r.sweeps.toFixed(1)} core-SVD sweeps/head, paths ${JSON.stringify(r.paths)}`,
      );
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) void main();
