/**
 * Synthetic ViT specs over an in-memory source, with seeded Gaussian weights: for tests and
 * benchmarks of the weight-only analysis (no checkpoint needed).
 */
import type { BlockSpec, LinearSpec, NormSpec, VitSpec, WeightRef } from '../arch/spec.js';
import { MemorySource } from '../checkpoint/memory.js';

/** mulberry32: a small deterministic PRNG, uniform on [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal draws (Box–Muller) from a uniform generator. */
export function gaussian(rand: () => number): () => number {
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = rand();
    const r = Math.sqrt(-2 * Math.log(u)), th = 2 * Math.PI * rand();
    spare = r * Math.sin(th);
    return r * Math.cos(th);
  };
}

export interface SyntheticOptions {
  layers: number;
  heads: number;
  headDim: number;
  /** Residual width d; default heads·headDim. */
  width?: number;
  /** Key/value heads (grouped-query attention); default heads. */
  kvHeads?: number;
  seed?: number;
  /** Give q (and k, v, o) biases. Default true. */
  bias?: boolean;
  /** Store q/k/v as one fused [(H+2KV)·d_h, d] tensor read by row ranges. Default false. */
  fused?: boolean;
  /** Materialise real v/o/MLP tensors (else they are refs to one tiny placeholder). Default false. */
  full?: boolean;
  /** Storage type of the tensors. Default 'f32'. */
  dtype?: 'f32' | 'f64';
}

export function syntheticSpec(o: SyntheticOptions): { spec: VitSpec; source: MemorySource } {
  const H = o.heads, dh = o.headDim, KV = o.kvHeads ?? H, d = o.width ?? H * dh;
  const src = new MemorySource('<synthetic>');
  const g = gaussian(mulberry32(o.seed ?? 1));
  const put = (name: string, shape: number[], scale: number): WeightRef => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = o.dtype === 'f64' ? new Float64Array(n) : new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = g() * scale;
    src.set(name, shape, data);
    return { source: src, name, shape };
  };
  const placeholder = (): WeightRef => {
    if (!src.info('unused.placeholder')) src.set('unused.placeholder', [1], [0]);
    return { source: src, name: 'unused.placeholder', shape: [1] };
  };
  const lin = (name: string, out: number, inn: number): LinearSpec =>
    o.full
      ? { weight: put(`${name}.weight`, [out, inn], 1 / Math.sqrt(inn)), bias: o.bias === false ? undefined : put(`${name}.bias`, [out], 0.02) }
      : { weight: { ...placeholder(), shape: [out, inn] } };
  const norm = (name: string): NormSpec =>
    o.full ? { kind: 'layernorm', weight: put(`${name}.weight`, [d], 1), bias: put(`${name}.bias`, [d], 0.1), eps: 1e-6 } : { kind: 'layernorm', eps: 1e-6 };
  const blocks: BlockSpec[] = [];
  const sc = 1 / Math.sqrt(d);
  for (let l = 0; l < o.layers; l++) {
    const p = `blocks.${l}`;
    let q: LinearSpec, k: LinearSpec, v: LinearSpec;
    if (o.fused) {
      const rows = (H + 2 * KV) * dh;
      const w = put(`${p}.attn.qkv.weight`, [rows, d], sc);
      const b = o.bias === false ? null : put(`${p}.attn.qkv.bias`, [rows], 0.5);
      const part = (r0: number, r1: number): LinearSpec => ({
        weight: { ...w, rows: [r0, r1], shape: [r1 - r0, d] },
        bias: b ? { ...b, rows: [r0, r1], shape: [r1 - r0] } : undefined,
      });
      q = part(0, H * dh);
      k = part(H * dh, (H + KV) * dh);
      v = part((H + KV) * dh, rows);
    } else {
      q = { weight: put(`${p}.attn.q.weight`, [H * dh, d], sc), bias: o.bias === false ? undefined : put(`${p}.attn.q.bias`, [H * dh], 0.5) };
      k = { weight: put(`${p}.attn.k.weight`, [KV * dh, d], sc), bias: o.bias === false ? undefined : put(`${p}.attn.k.bias`, [KV * dh], 0.5) };
      v = lin(`${p}.attn.v`, KV * dh, d);
    }
    blocks.push({
      norm1: norm(`${p}.norm1`),
      q,
      k,
      v,
      o: lin(`${p}.attn.proj`, d, H * dh),
      norm2: norm(`${p}.norm2`),
      mlp: { kind: 'mlp', fc1: lin(`${p}.mlp.fc1`, 4 * d, d), fc2: lin(`${p}.mlp.fc2`, d, 4 * d) },
    });
  }
  const spec: VitSpec = {
    family: 'synthetic',
    modelId: `synthetic-L${o.layers}-H${H}-d${d}`,
    modality: 'vision',
    imageSize: [224, 224],
    patchSize: 16,
    channels: 3,
    width: d,
    heads: H,
    headDim: dh,
    kvHeads: KV,
    layers: o.layers,
    tokenLayout: ['cls'],
    blocks,
    pooling: 'cls',
    activation: 'gelu',
  };
  return { spec, source: src };
}
