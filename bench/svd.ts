/**
 * `svd` benchmark: the whole `qkscope svd` command (child process, spawn to files written,
 * figures on and off) on full-size random timm checkpoints (ViT-B/16, ViT-H/14), against numpy
 * doing the same maths in the same run: per head, QR of W_qᵀ and W_kᵀ, SVD of the small core
 * R_q·R_kᵀ, U = Q_q·P, V = Q_k·S and the cosines (float64; the compute alone, weights already
 * in memory). Rounds are interleaved (numpy, figures on, figures off) so that load drifting on
 * the shared machine hits all rows alike; each row reports the best and the range of its runs.
 * numpy's σ are also compared with the command's singular_values.npy.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { VIT_B16, VIT_H14, writeSyntheticTimm, type VitSize } from './synthetic-checkpoint.js';
import { PY_BLAS_NAMES, load1, numpyMissing, python, runCli, spread, type Spread } from './measure.js';

/** numpy thin SVD of every head of a synthetic timm checkpoint (fused qkv rows: q then k). */
const NUMPY_THIN = `
import sys, json, time, resource
import numpy as np
${PY_BLAS_NAMES}
path, L, H, dh, ours = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
with open(path, 'rb') as f:
    n = int.from_bytes(f.read(8), 'little')
    hdr = json.loads(f.read(n))
data = np.memmap(path, dtype=np.uint8, mode='r', offset=8 + n)
def tensor(name):
    e = hdr[name]
    b, x = e['data_offsets']
    return np.frombuffer(data[b:x], dtype='<f4').reshape(e['shape'])
Wq, Wk = [], []
for l in range(L):
    qkv = tensor('blocks.%d.attn.qkv.weight' % l)
    Wq.append(np.array(qkv[:H * dh]))
    Wk.append(np.array(qkv[H * dh:2 * H * dh]))
sig = np.zeros((L, H, dh))
t = time.perf_counter()
for l in range(L):
    for h in range(H):
        q = Wq[l][h * dh:(h + 1) * dh].astype(np.float64).T
        k = Wk[l][h * dh:(h + 1) * dh].astype(np.float64).T
        Qq, Rq = np.linalg.qr(q)
        Qk, Rk = np.linalg.qr(k)
        P, s, St = np.linalg.svd(Rq @ Rk.T)
        U = Qq @ P
        V = Qk @ St.T
        c = np.einsum('ij,ij->j', U, V)
        sig[l, h] = s
seconds = time.perf_counter() - t
out = {'seconds': seconds, 'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'blas': blas_names()}
if ours:
    o = np.load(ours)
    out['max_sigma_diff_rel'] = float(np.max(np.abs(o - sig) / o[..., :1]))
print(json.dumps(out))
`;

export interface SvdBenchRow {
  model: string;
  figures: boolean;
  /** Wall seconds of the whole command, per run. */
  wall: Spread;
  peakRssMB: number;
  /** q/k bytes of the checkpoint (what the analysis reads), MB. */
  qkMB: number;
  /** numpy's thin QR+SVD compute in the same rounds (null when numpy is unavailable). */
  numpy: Spread | null;
  /** ours / numpy per round (the same moment on the shared machine): best, median, worst. */
  ratio: Spread | null;
  target: string;
  met: boolean | null;
  /** 1-minute load average before and after the row's rounds. */
  load: [number, number];
}

export interface SvdBenchResult {
  rows: SvdBenchRow[];
  numpy: { available: boolean; why?: string; blas?: string[]; maxSigmaDiffRel?: Record<string, number> };
}

type Target = (wall: number, np: number | null, ratio: number | null) => [string, boolean | null];
const TARGETS: Record<string, { figures: Target; plain: Target }> = {
  vit_base_patch16_224: {
    figures: (_w, _np, ratio) => ['<= 0.5 x numpy thin', ratio === null ? null : ratio <= 0.5],
    plain: (w) => ['< 1 s', w < 1],
  },
  vit_huge_patch14_224: {
    figures: (w) => ['< 6 s', w < 6],
    plain: () => ['-', null],
  },
};

export function benchSvd(sizes: VitSize[] = [VIT_B16, VIT_H14], repeats = Number(process.env.QKSCOPE_BENCH_REPEATS ?? 3)): SvdBenchResult {
  const missing = numpyMissing();
  const result: SvdBenchResult = { rows: [], numpy: missing ? { available: false, why: missing } : { available: true, maxSigmaDiffRel: {} } };
  const root = mkdtempSync(join(tmpdir(), 'qkscope-bench-svd-'));
  try {
    for (const s of sizes) {
      const dir = join(root, s.arch);
      const { qkBytes } = writeSyntheticTimm(dir, s);
      const ckpt = join(dir, 'model.safetensors');
      const load0 = load1();
      runCli(['svd', dir, '--out', join(root, 'warm')]); // page cache, then every run alike
      const ours = { true: [] as number[], false: [] as number[] };
      const rss = { true: 0, false: 0 };
      const np: number[] = [];
      for (let r = 0; r < repeats; r++) {
        if (!missing) {
          const ref = python<{ seconds: number; blas: string[]; max_sigma_diff_rel?: number }>(NUMPY_THIN, [ckpt, String(s.layers), String(s.heads), String(s.width / s.heads), r === 0 ? join(root, 'warm', 'singular_values.npy') : '']);
          np.push(ref.seconds);
          result.numpy.blas = ref.blas;
          if (ref.max_sigma_diff_rel !== undefined) result.numpy.maxSigmaDiffRel![s.arch] = ref.max_sigma_diff_rel;
        }
        for (const figures of [true, false]) {
          const out = join(root, `out-${s.arch}-${figures}-${r}`);
          const run = runCli(['svd', dir, '--out', out, ...(figures ? [] : ['--no-figures'])]);
          ours[`${figures}`].push(run.wallS);
          rss[`${figures}`] = Math.max(rss[`${figures}`], run.peakRssMB);
          rmSync(out, { recursive: true, force: true });
        }
      }
      const npSpread = np.length ? spread(np) : null;
      for (const figures of [true, false]) {
        const wall = spread(ours[`${figures}`]);
        const ratio = npSpread ? spread(ours[`${figures}`].map((w, r) => w / np[r])) : null;
        const [target, met] = (TARGETS[s.arch]?.[figures ? 'figures' : 'plain'] ?? (() => ['-', null]))(wall.best, npSpread?.best ?? null, ratio?.best ?? null);
        result.rows.push({ model: s.arch, figures, wall, peakRssMB: rss[`${figures}`], qkMB: qkBytes / 2 ** 20, numpy: npSpread, ratio, target, met, load: [load0, load1()] });
      }
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    if (existsSync(root)) rmSync(root, { recursive: true, force: true });
  }
  return result;
}
