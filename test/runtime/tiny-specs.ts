/**
 * Tiny VitSpecs in every family's shape, built directly on a MemorySource with seeded random
 * weights (the runtime's own fixtures; the registry's layouts are tested end to end elsewhere).
 */
import { MemorySource } from '../../src/checkpoint/memory.js';
import type { Activation, BlockSpec, LinearSpec, NormSpec, SpecialToken, VitSpec, WeightRef } from '../../src/arch/spec.js';

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

export interface TinyOptions {
  family: string;
  width?: number;
  heads?: number;
  layers?: number;
  patch?: number;
  image?: number;
  /** Position-embedding grid (default image / patch). */
  posGrid?: number;
  tokens?: SpecialToken[];
  registers?: number;
  /** Rows of the position embedding owned by special tokens. */
  posSpecial?: number;
  noPos?: boolean;
  preNorm?: boolean;
  finalNorm?: boolean;
  activation?: Activation;
  layerScale?: boolean;
  relPos?: boolean;
  noKBias?: boolean;
  swiglu?: boolean;
  pooling?: VitSpec['pooling'];
  fcNorm?: boolean;
  classes?: number;
  distHead?: boolean;
  /** Head reads [CLS, mean patches] (DINOv2): pooling 'cls+mean'. */
  headConcat?: boolean;
  /** SigLIP's attention-pooling head (pooling 'attention'), with this many heads. */
  attnPoolHeads?: number;
  mlpRatio?: number;
  seed?: number;
  scale?: number;
}

export function tinySpec(o: TinyOptions): VitSpec {
  const d = o.width ?? 16;
  const H = o.heads ?? 2;
  const L = o.layers ?? 2;
  const p = o.patch ?? 4;
  const img = o.image ?? 12;
  const grid = o.posGrid ?? Math.floor(img / p);
  const C = 3;
  const hidden = d * (o.mlpRatio ?? 2);
  const rand = rng(o.seed ?? 1234);
  const sc = o.scale ?? 0.3;
  const src = new MemorySource(`<tiny ${o.family}>`);
  const t = (name: string, shape: number[], scale = sc, offset = 0): WeightRef => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = offset + (rand() * 2 - 1) * scale;
    src.set(name, shape, data);
    return { source: src, name, shape };
  };
  const lin = (name: string, out: number, inn: number, bias = true): LinearSpec => ({
    weight: t(`${name}.weight`, [out, inn], sc * 2 / Math.sqrt(inn)),
    bias: bias ? t(`${name}.bias`, [out], 0.1) : undefined,
  });
  const norm = (name: string, dim = d): NormSpec => ({ kind: 'layernorm', weight: t(`${name}.weight`, [dim], 0.2, 1), bias: t(`${name}.bias`, [dim], 0.1), eps: 1e-6 });
  const tokens = o.tokens ?? ['cls'];
  const regs = o.registers ?? 0;
  const layout: SpecialToken[] = [...tokens];
  const posSpecial = o.posSpecial ?? tokens.filter((x) => x !== 'reg').length;
  const blocks: BlockSpec[] = [];
  const T = layout.filter((x) => x !== 'reg').length + regs + grid * grid;
  for (let l = 0; l < L; l++) {
    const k = `blocks.${l}`;
    blocks.push({
      norm1: norm(`${k}.norm1`),
      q: lin(`${k}.q`, d, d),
      k: lin(`${k}.k`, d, d, !o.noKBias),
      v: lin(`${k}.v`, d, d),
      o: lin(`${k}.o`, d, d),
      ls1: o.layerScale ? t(`${k}.ls1`, [d], 0.5, 0.5) : undefined,
      ls2: o.layerScale ? t(`${k}.ls2`, [d], 0.5, 0.5) : undefined,
      norm2: norm(`${k}.norm2`),
      mlp: o.swiglu
        ? { kind: 'swiglu', w12: lin(`${k}.w12`, 2 * hidden, d), w3: lin(`${k}.w3`, d, hidden) }
        : { kind: 'mlp', fc1: lin(`${k}.fc1`, hidden, d), fc2: lin(`${k}.fc2`, d, hidden) },
      relPosBias: o.relPos ? { table: t(`${k}.rpb`, [(2 * grid - 1) * (2 * grid - 1) + 3, H], 0.5), window: [grid, grid] } : undefined,
    });
  }
  void T;
  const classes = o.classes ?? 0;
  const headIn = o.headConcat ? 2 * d : d;
  const spec: VitSpec = {
    family: o.family,
    modelId: `tiny-${o.family}`,
    modality: 'vision',
    imageSize: [img, img],
    patchSize: p,
    channels: C,
    width: d,
    heads: H,
    headDim: d / H,
    kvHeads: H,
    layers: L,
    tokenLayout: layout,
    patchEmbed: { kind: 'conv', weight: t('patch.weight', [d, C, p, p], 0.3), bias: t('patch.bias', [d], 0.1) },
    clsToken: tokens.includes('cls') ? t('cls', [1, 1, d], 0.5) : undefined,
    distToken: tokens.includes('dist') ? t('dist', [1, 1, d], 0.5) : undefined,
    registerTokens: regs ? t('reg', [1, regs, d], 0.5) : undefined,
    posEmbed: o.noPos ? undefined : { weight: t('pos', [1, posSpecial + grid * grid, d], 0.5), grid: [grid, grid], special: posSpecial },
    preNorm: o.preNorm ? norm('pre') : undefined,
    blocks,
    finalNorm: o.finalNorm === false ? undefined : norm('final'),
    pooling: o.pooling ?? (o.headConcat ? 'cls+mean' : o.attnPoolHeads ? 'attention' : 'cls'),
    fcNorm: o.fcNorm ? norm('fcnorm', headIn) : undefined,
    head: classes ? lin('head', classes, headIn) : undefined,
    distHead: classes && o.distHead ? lin('head_dist', classes, d) : undefined,
    activation: o.activation ?? 'gelu',
  };
  if (o.attnPoolHeads) {
    spec.attnPool = {
      probe: t('pool.probe', [1, 1, d], 0.5),
      heads: o.attnPoolHeads,
      q: lin('pool.q', d, d),
      k: lin('pool.k', d, d),
      v: lin('pool.v', d, d),
      o: lin('pool.o', d, d),
      norm: norm('pool.norm'),
      fc1: lin('pool.fc1', hidden, d),
      fc2: lin('pool.fc2', d, hidden),
    };
  }
  return spec;
}

/** One spec per family / variant the runtime must handle. */
export function familySpecs(): Record<string, VitSpec> {
  return {
    vit: tinySpec({ family: 'hf-vit', classes: 5, seed: 1 }),
    deit: tinySpec({ family: 'hf-deit', tokens: ['cls', 'dist'], classes: 5, distHead: true, seed: 2 }),
    clip: tinySpec({ family: 'hf-clip', preNorm: true, activation: 'quick_gelu', seed: 3 }),
    dinov2: tinySpec({ family: 'hf-dinov2', layerScale: true, classes: 4, headConcat: true, seed: 4 }),
    'dinov2-reg-swiglu': tinySpec({ family: 'hf-dinov2', tokens: ['cls', 'reg'], registers: 3, posSpecial: 1, layerScale: true, swiglu: true, seed: 5 }),
    beit: tinySpec({ family: 'hf-beit', relPos: true, noPos: true, layerScale: true, noKBias: true, finalNorm: false, pooling: 'mean', fcNorm: true, classes: 3, seed: 6 }),
    mae: tinySpec({ family: 'hf-vit_mae', pooling: 'none', seed: 7 }),
    simmim: tinySpec({ family: 'simmim', pooling: 'none', layerScale: true, seed: 8 }),
    ijepa: tinySpec({ family: 'hf-ijepa', tokens: [], posSpecial: 0, pooling: 'none', seed: 9 }),
    siglip: tinySpec({ family: 'hf-siglip', tokens: [], posSpecial: 0, activation: 'gelu_tanh', pooling: 'none', seed: 10 }),
    'siglip-attention-pool': tinySpec({ family: 'hf-siglip', tokens: [], posSpecial: 0, activation: 'gelu_tanh', attnPoolHeads: 4, seed: 15 }),
    'dinov2-reg-classifier': tinySpec({ family: 'hf-dinov2-registers', tokens: ['cls', 'reg'], registers: 2, posSpecial: 1, layerScale: true, classes: 3, headConcat: true, seed: 16 }),
    'timm-no-embed-class': tinySpec({ family: 'timm-vit', posSpecial: 0, classes: 3, seed: 11 }),
    'timm-no-cls-avg': tinySpec({ family: 'timm-vit', tokens: [], posSpecial: 0, pooling: 'mean', fcNorm: true, finalNorm: false, classes: 3, seed: 12 }),
    'timm-reg': tinySpec({ family: 'timm-vit', tokens: ['cls', 'reg', 'reg'], registers: 2, posSpecial: 3, classes: 3, activation: 'silu', seed: 13 }),
    'relu-prenorm': tinySpec({ family: 'hf-vit', activation: 'relu', preNorm: true, finalNorm: false, seed: 14 }),
  };
}

/** Deterministic pixels [n, 3, h, w] in about [-2, 2]. */
export function tinyPixels(n: number, h: number, w: number, seed = 99): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n * 3 * h * w);
  for (let i = 0; i < a.length; i++) a[i] = (r() * 2 - 1) * 2;
  return a;
}
