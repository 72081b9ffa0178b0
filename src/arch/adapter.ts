import { UserError } from '../errors.js';
import type { TensorInfo, TensorSource } from '../checkpoint/types.js';
import type { Activation, BlockSpec, LinearSpec, NormSpec, RelPosBiasSpec, VitSpec, WeightRef } from './spec.js';

/** What every family adapter receives (the arguments of `buildSpec`). */
export interface BuildInput {
  /** config.json (HF or timm); null for release dicts without one (SimMIM, I-JEPA). */
  config: Record<string, unknown> | null;
  /** preprocessor_config.json when the checkpoint has one. */
  preprocessorConfig?: Record<string, unknown> | null;
  source: TensorSource;
  modelId: string;
  /** `--num-heads`: wins over the config (a note says so) and is required where nothing else tells. */
  numHeads?: number;
  /**
   * Which sub-model of a multi-model release to analyse: I-JEPA release dicts hold
   * 'encoder' (default), 'target_encoder' and 'predictor'.
   */
  component?: string;
  /** `--layout NAME|FILE.json`: read the tensors with this declarative layout (arch/layout/). */
  layout?: string;
  /** Paths of config.json / preprocessor_config.json, for messages (default: the bare names). */
  configFile?: string;
  preprocessorFile?: string;
}

/**
 * A family adapter: small and declarative. Registered by HF `model_type` (`modelTypes`) or,
 * when no model_type matches, by `detect` (timm's `architecture` key, release dicts recognised
 * from tensor names).
 */
export interface Adapter {
  family: string;
  /** One line for the unsupported-architecture message, e.g. "vit (ViTModel, ViTForImageClassification)". */
  label: string;
  modelTypes?: string[];
  detect?(input: BuildInput): boolean;
  build(input: BuildInput): VitSpec;
}

// ---------------------------------------------------------------------------------------------
// Config access
// ---------------------------------------------------------------------------------------------

export type Json = Record<string, unknown>;

export function obj(v: unknown): Json | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
}

export function num(cfg: Json | null | undefined, key: string): number | undefined {
  const v = cfg?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export function str(cfg: Json | null | undefined, key: string): string | undefined {
  const v = cfg?.[key];
  return typeof v === 'string' ? v : undefined;
}

export function bool(cfg: Json | null | undefined, key: string): boolean | undefined {
  const v = cfg?.[key];
  return typeof v === 'boolean' ? v : undefined;
}

/** HF `image_size`/`patch_size` may be an int or a [h, w] pair. */
export function pair(v: unknown): [number, number] | undefined {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number')) return [v[0] as number, v[1] as number];
  return undefined;
}

/** Maps HF/timm activation names to ours; unknown names are a UserError. */
export function activation(name: string | undefined, fallback: Activation, where: string): Activation {
  if (name === undefined) return fallback;
  const map: Record<string, Activation> = {
    gelu: 'gelu',
    gelu_python: 'gelu',
    gelu_new: 'gelu_tanh',
    gelu_pytorch_tanh: 'gelu_tanh',
    gelu_tanh: 'gelu_tanh',
    gelu_fast: 'gelu_tanh',
    quick_gelu: 'quick_gelu',
    relu: 'relu',
    silu: 'silu',
    swish: 'silu',
  };
  const a = map[name];
  if (!a) throw new UserError(`${where}: activation ${JSON.stringify(name)} is not supported (supported: ${Object.keys(map).join(', ')})`);
  return a;
}

// ---------------------------------------------------------------------------------------------
// Config validation: every number an adapter reads is checked before use
// ---------------------------------------------------------------------------------------------

/**
 * What a config number must be. 'int': a whole number in [min, max]; 'real': a finite number in
 * (min, max] (`min` excluded when `open`); 'size': a whole number or an [h, w] pair of them (HF
 * `image_size`, `patch_size`), or a {height, width} / {shortest_edge} object (preprocessor
 * `size`); 'chw': timm's [C, H, W] `input_size`; 'triple': three finite numbers (means, stds).
 */
export interface NumRule {
  kind: 'int' | 'real' | 'size' | 'chw' | 'triple';
  min: number;
  max: number;
  /** `min` itself is not allowed (eps > 0, std > 0). */
  open?: boolean;
  /** What the number is, for the message ("attention heads"). */
  what: string;
}

/** Sane bounds shared by every family (far beyond any released model, small enough to run). */
export const RULES = {
  width: { kind: 'int', min: 1, max: 65536, what: 'the model width' },
  heads: { kind: 'int', min: 1, max: 4096, what: 'attention heads' },
  headDim: { kind: 'int', min: 1, max: 4096, what: 'the head width' },
  layers: { kind: 'int', min: 1, max: 1024, what: 'layers' },
  hidden: { kind: 'int', min: 1, max: 1 << 20, what: 'the MLP width' },
  image: { kind: 'size', min: 1, max: 4096, what: 'the image size in pixels' },
  patch: { kind: 'size', min: 1, max: 1024, what: 'the patch size in pixels' },
  channels: { kind: 'int', min: 1, max: 64, what: 'image channels' },
  registers: { kind: 'int', min: 0, max: 1024, what: 'register tokens' },
  eps: { kind: 'real', min: 0, max: 1, open: true, what: 'the normalisation epsilon' },
  inputSize: { kind: 'chw', min: 1, max: 4096, what: '[channels, height, width]' },
  fraction: { kind: 'real', min: 0, max: 2, open: true, what: 'the crop fraction' },
  rescale: { kind: 'real', min: 0, max: 1, open: true, what: 'the pixel rescale factor' },
  mean: { kind: 'triple', min: -1e3, max: 1e3, what: 'per-channel means' },
  std: { kind: 'triple', min: 0, max: 1e3, open: true, what: 'per-channel standard deviations' },
} as const satisfies Record<string, NumRule>;

function ruleText(r: NumRule): string {
  const range = r.open ? `greater than ${r.min} and at most ${r.max}` : `from ${r.min} to ${r.max}`;
  switch (r.kind) {
    case 'int':
      return `a whole number ${range} (${r.what})`;
    case 'real':
      return `a number ${range} (${r.what})`;
    case 'size':
      return `a whole number ${range}, or a [height, width] pair of them (${r.what})`;
    case 'chw':
      return `[channels, height, width] with channels 1..64 and sizes ${range}`;
    case 'triple':
      return `three numbers ${range} (${r.what})`;
  }
}

function fits(v: unknown, r: NumRule, int: boolean): boolean {
  return typeof v === 'number' && Number.isFinite(v) && (!int || Number.isInteger(v)) && (r.open ? v > r.min : v >= r.min) && v <= r.max;
}

function valid(v: unknown, r: NumRule): boolean {
  switch (r.kind) {
    case 'int':
    case 'real':
      return fits(v, r, r.kind === 'int');
    case 'size': {
      if (Array.isArray(v)) return v.length === 2 && v.every((x) => fits(x, r, true));
      const o = obj(v);
      if (o) {
        const keys = ['height', 'width', 'shortest_edge', 'longest_edge'].filter((k) => o[k] !== undefined && o[k] !== null);
        return keys.length > 0 && keys.every((k) => fits(o[k], r, true));
      }
      return fits(v, r, true);
    }
    case 'chw':
      return Array.isArray(v) && v.length === 3 && fits(v[0], RULES.channels, true) && fits(v[1], r, true) && fits(v[2], r, true);
    case 'triple':
      return (Array.isArray(v) && v.length === 3 && v.every((x) => fits(x, r, false))) || fits(v, r, false);
  }
}

/** The value at a dotted key path ('vision_config.hidden_size'), or undefined. */
function at(cfg: Json | null | undefined, path: string): unknown {
  let cur: unknown = cfg;
  for (const k of path.split('.')) cur = obj(cur)?.[k];
  return cur;
}

/**
 * The one check of config numbers, run by each adapter before it reads them: every key of
 * `rules` present (not null) in `cfg` must satisfy its rule, and in every [a, b] of `divides`
 * the value at b must divide the value at a (when both are there). A violation is one line:
 * "FILE: KEY = VALUE; expected …". Keys are dotted paths; `label` prefixes the key in messages
 * (e.g. 'vision_config.' for a merged nested config).
 */
export function checkConfig(cfg: Json | null | undefined, file: string, rules: Record<string, NumRule>, divides: Divides[] = [], label = ''): void {
  if (!cfg) return;
  for (const [key, rule] of Object.entries(rules)) {
    const v = at(cfg, key);
    if (v === undefined || v === null) continue;
    if (!valid(v, rule)) throw new UserError(`${file}: ${label}${key} = ${JSON.stringify(v)}; expected ${ruleText(rule)}`);
  }
  for (const [a, b, says] of divides) {
    const va = at(cfg, a);
    const vb = at(cfg, b);
    if (typeof va === 'number' && typeof vb === 'number' && va % vb !== 0) {
      const why = (says ?? '{a} is not divisible by {b}').replace('{a}', String(va)).replace('{b}', String(vb));
      throw new UserError(`${file}: ${label}${a} = ${va}, ${label}${b} = ${vb}: ${why}; expected ${b} to divide ${a}`);
    }
  }
}

/** [a, b, what it means]: the value at b must divide the value at a ("width {a} is not divisible by {b} heads"). */
export type Divides = [string, string, string?];

/** The usual one: the attention heads divide the width. */
export const HEADS_DIVIDE = (width: string, heads: string): Divides => [width, heads, 'width {a} is not divisible by {b} heads'];

/** The config file's name for messages. */
export const configFile = (input: BuildInput): string => input.configFile ?? 'config.json';

/** The keys every HF vision family (ViT layer naming, DINOv2, BEiT) reads. */
export const HF_VISION_RULES: Record<string, NumRule> = {
  hidden_size: RULES.width,
  num_attention_heads: RULES.heads,
  num_hidden_layers: RULES.layers,
  image_size: RULES.image,
  patch_size: RULES.patch,
  num_channels: RULES.channels,
  layer_norm_eps: RULES.eps,
};

// ---------------------------------------------------------------------------------------------
// Checkpoint access with a name prefix, clear errors and shape checks
// ---------------------------------------------------------------------------------------------

const squeeze = (shape: number[]): number[] => {
  let i = 0;
  while (i < shape.length - 1 && shape[i] === 1) i++;
  return shape.slice(i);
};
const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
const fmt = (s: number[]) => `[${s.join(', ')}]`;

/**
 * The tensors of one (sub-)model: every name is looked up under `prefix`. Missing tensors and
 * shape disagreements are UserErrors naming the tensor and the file.
 */
export class Weights {
  private readonly nameSet: Set<string>;
  constructor(
    readonly source: TensorSource,
    readonly prefix = '',
    nameSet?: Set<string>,
  ) {
    this.nameSet = nameSet ?? new Set(source.names());
  }

  get file(): string {
    return this.source.location;
  }

  /** The same tensors under a longer prefix. */
  sub(prefix: string): Weights {
    return new Weights(this.source, this.prefix + prefix, this.nameSet);
  }

  withPrefix(prefix: string): Weights {
    return new Weights(this.source, prefix, this.nameSet);
  }

  has(name: string): boolean {
    return this.nameSet.has(this.prefix + name);
  }

  /** All names (without the prefix) under this prefix. */
  names(): string[] {
    const out: string[] = [];
    for (const n of this.nameSet) if (n.startsWith(this.prefix)) out.push(n.slice(this.prefix.length));
    return out;
  }

  info(name: string): TensorInfo {
    const full = this.prefix + name;
    const i = this.nameSet.has(full) ? this.source.info(full) : undefined;
    if (!i) throw this.missing(name);
    return i;
  }

  missing(name: string, hint = 'the checkpoint is incomplete or not of the architecture its config names'): UserError {
    return new UserError(`${this.file}: tensor ${this.prefix + name} is missing; ${hint}`);
  }

  /** A ref to a whole tensor. `shape` (canonical) is checked against the stored shape, leading 1s ignored. */
  ref(name: string, shape?: number[], why?: string): WeightRef {
    const info = this.info(name);
    const stored = squeeze(info.shape);
    if (shape && !same(stored, squeeze(shape))) throw this.shapeError(name, info.shape, shape, why);
    return { source: this.source, name: this.prefix + name, shape: shape ?? stored };
  }

  opt(name: string, shape?: number[], why?: string): WeightRef | undefined {
    return this.has(name) ? this.ref(name, shape, why) : undefined;
  }

  /** Rows [r0, r1) of a fused tensor (qkv weight [3d, d] or bias [3d]). */
  rows(name: string, r0: number, r1: number, rest: number[]): WeightRef {
    return { source: this.source, name: this.prefix + name, rows: [r0, r1], shape: [r1 - r0, ...rest] };
  }

  /**
   * A Conv1D weight stored [in, out] (GPT-2) as a canonical [out, in] ref; `rows` selects
   * canonical rows (stored columns) of a fused one such as `c_attn` [d, 3d].
   */
  transposed(name: string, out: number, inn: number, rows?: [number, number]): WeightRef {
    const info = this.info(name);
    if (!same(info.shape, [inn, out])) throw this.shapeError(name, info.shape, [inn, out], 'a Conv1D weight stored [in, out]');
    const r: WeightRef = { source: this.source, name: this.prefix + name, transposed: true, shape: rows ? [rows[1] - rows[0], inn] : [out, inn] };
    if (rows) r.rows = rows;
    return r;
  }

  shapeError(name: string, got: number[], want: number[], why?: string): UserError {
    return new UserError(
      `${this.file}: tensor ${this.prefix + name} has shape ${fmt(got)} but ${fmt(want)} was expected` +
        `${why ? ` (${why})` : ''}; the config does not match the weights (wrong config.json, or pass --num-heads)`,
    );
  }

  /** A linear layer `base.weight` [out, in] (+ `base.bias` [out] when present or required). */
  linear(base: string, out: number, inn: number, bias: 'required' | 'optional' | 'none' = 'optional', why?: string): LinearSpec {
    const weight = this.ref(`${base}.weight`, [out, inn], why);
    let b: WeightRef | undefined;
    if (bias === 'required') b = this.ref(`${base}.bias`, [out], why);
    else if (bias === 'optional') b = this.opt(`${base}.bias`, [out], why);
    return b ? { weight, bias: b } : { weight };
  }

  /** A linear layer whose output width is read from the checkpoint (heads, MLPs). */
  linearAny(base: string, inn: number, bias: 'required' | 'optional' | 'none' = 'optional'): LinearSpec {
    const info = this.info(`${base}.weight`);
    if (info.shape.length !== 2 || info.shape[1] !== inn) throw this.shapeError(`${base}.weight`, info.shape, [info.shape[0], inn], `input width ${inn}`);
    return this.linear(base, info.shape[0], inn, bias);
  }

  norm(base: string, d: number, eps: number, kind: NormSpec['kind'] = 'layernorm'): NormSpec {
    const weight = this.ref(`${base}.weight`, [d]);
    const bias = kind === 'layernorm' ? this.opt(`${base}.bias`, [d]) : undefined;
    return { kind, weight, ...(bias ? { bias } : {}), eps };
  }

  optNorm(base: string, d: number, eps: number, kind: NormSpec['kind'] = 'layernorm'): NormSpec | undefined {
    return this.has(`${base}.weight`) ? this.norm(base, d, eps, kind) : undefined;
  }

  /** Number of layers: 1 + the largest i in names `${head}{i}.` (0 when none). */
  countLayers(head: string): number {
    const esc = (this.prefix + head).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const re = new RegExp(`^${esc}(\\d+)\\.`);
    let max = -1;
    for (const n of this.nameSet) {
      const m = re.exec(n);
      if (m) max = Math.max(max, Number(m[1]));
    }
    return max + 1;
  }
}

/**
 * Picks the prefix under which `anchor` exists among `candidates` (first match wins); when none
 * matches, any prefix ending a name that ends in `anchor` is used if unique.
 */
export function findPrefix(source: TensorSource, anchor: string, candidates: string[]): string | undefined {
  const names = source.names();
  const set = new Set(names);
  for (const c of candidates) if (set.has(c + anchor)) return c;
  const found = names.filter((n) => n.endsWith(anchor)).map((n) => n.slice(0, n.length - anchor.length));
  const uniq = [...new Set(found)].filter((p) => p === '' || p.endsWith('.'));
  return uniq.length === 1 ? uniq[0] : undefined;
}

// ---------------------------------------------------------------------------------------------
// Blocks, heads, grids
// ---------------------------------------------------------------------------------------------

/** How one pre-norm block's tensors are named (relative to the block prefix). */
export interface BlockNames {
  norm1: string;
  norm2: string;
  /** Separate q/k/v linear bases... */
  q?: string;
  k?: string;
  v?: string;
  /** ...or a fused qkv linear base (`attn.qkv`: weight [3d, d], optional bias [3d]). */
  qkv?: string;
  /** BEiT/SimMIM-style split biases next to a bias-free fused qkv (no k bias). */
  qBias?: string;
  vBias?: string;
  o: string;
  /** Layer-scale tensor names (full names, e.g. `ls1.gamma`, `lambda_1`). */
  ls1?: string;
  ls2?: string;
  fc1?: string;
  fc2?: string;
  /** SwiGLU-packed MLP (DINOv2 `mlp.weights_in` / `mlp.weights_out`). */
  w12?: string;
  w3?: string;
  /** Per-block relative position bias table name. */
  relPos?: string;
}

export interface BlockOptions {
  d: number;
  heads: number;
  eps: number;
  /** Grid the relative position tables are built for. */
  window?: [number, number];
  /** A relative position bias shared by all blocks (BEiT `use_shared_relative_position_bias`). */
  sharedRelPos?: WeightRef;
  /** Whether a missing k bias is expected (BEiT: key has no bias). */
  kBias?: 'optional' | 'none';
}

function relPosRef(w: Weights, name: string, heads: number, window: [number, number]): WeightRef {
  const n = (2 * window[0] - 1) * (2 * window[1] - 1) + 3;
  return w.ref(name, [n, heads], `relative position table for a ${window[0]}x${window[1]} grid and ${heads} heads`);
}

export function sharedRelPos(w: Weights, name: string, heads: number, window: [number, number]): WeightRef {
  return relPosRef(w, name, heads, window);
}

/** Builds `layers` blocks whose tensors live under `${layerHead}${i}.`. */
export function buildBlocks(w: Weights, layerHead: string, layers: number, names: BlockNames, o: BlockOptions): BlockSpec[] {
  const { d, eps } = o;
  const blocks: BlockSpec[] = [];
  for (let i = 0; i < layers; i++) {
    const b = w.sub(`${layerHead}${i}.`);
    let q: LinearSpec, k: LinearSpec, v: LinearSpec;
    if (names.qkv) {
      const wn = `${names.qkv}.weight`;
      const info = b.info(wn);
      if (!same(info.shape, [3 * d, d])) throw b.shapeError(wn, info.shape, [3 * d, d], `fused q, k, v for width ${d}`);
      q = { weight: b.rows(wn, 0, d, [d]) };
      k = { weight: b.rows(wn, d, 2 * d, [d]) };
      v = { weight: b.rows(wn, 2 * d, 3 * d, [d]) };
      const bn = `${names.qkv}.bias`;
      if (b.has(bn)) {
        b.ref(bn, [3 * d]);
        q.bias = b.rows(bn, 0, d, []);
        k.bias = b.rows(bn, d, 2 * d, []);
        v.bias = b.rows(bn, 2 * d, 3 * d, []);
      } else {
        if (names.qBias && b.has(names.qBias)) q.bias = b.ref(names.qBias, [d]);
        if (names.vBias && b.has(names.vBias)) v.bias = b.ref(names.vBias, [d]);
      }
    } else {
      q = b.linear(names.q!, d, d, 'optional', `query of width ${d}`);
      k = b.linear(names.k!, d, d, o.kBias === 'none' ? 'none' : 'optional', `key of width ${d}`);
      v = b.linear(names.v!, d, d, 'optional', `value of width ${d}`);
    }
    const block: BlockSpec = {
      norm1: b.norm(names.norm1, d, eps),
      q,
      k,
      v,
      o: b.linear(names.o, d, d, 'optional', `attention output of width ${d}`),
      norm2: b.norm(names.norm2, d, eps),
      mlp: names.w12
        ? { kind: 'swiglu', w12: b.linearAny(names.w12, d), w3: { weight: b.ref(`${names.w3}.weight`), ...(b.has(`${names.w3}.bias`) ? { bias: b.ref(`${names.w3}.bias`, [d]) } : {}) } }
        : (() => {
            const fc1 = b.linearAny(names.fc1!, d);
            const hidden = fc1.weight.shape[0];
            return { kind: 'mlp' as const, fc1, fc2: b.linear(names.fc2!, d, hidden) };
          })(),
    };
    if (block.mlp.kind === 'swiglu') {
      const h2 = block.mlp.w12.weight.shape[0];
      const w3 = block.mlp.w3.weight;
      if (h2 % 2 !== 0 || !same(w3.shape, [d, h2 / 2])) throw b.shapeError(`${names.w3}.weight`, w3.shape, [d, h2 / 2], 'SwiGLU output');
    }
    if (names.ls1 && b.has(names.ls1)) block.ls1 = b.ref(names.ls1, [d]);
    if (names.ls2 && b.has(names.ls2)) block.ls2 = b.ref(names.ls2, [d]);
    if (names.relPos && b.has(names.relPos)) {
      if (!o.window) throw new Error('relative position bias without a window');
      block.relPosBias = { table: relPosRef(b, names.relPos, o.heads, o.window), window: o.window };
    } else if (o.sharedRelPos && o.window) {
      block.relPosBias = { table: o.sharedRelPos, window: o.window } satisfies RelPosBiasSpec;
    }
    blocks.push(block);
  }
  return blocks;
}

/** Resolves the head count: `--num-heads` wins (noted), then config, then `fallback`. */
export function resolveHeads(
  input: BuildInput,
  fromConfig: number | undefined,
  d: number,
  notes: string[],
  where: string,
  fallback?: { heads: number; why: string },
): number {
  let heads: number | undefined;
  if (input.numHeads !== undefined) {
    if (!Number.isInteger(input.numHeads) || input.numHeads <= 0) throw new UserError(`--num-heads must be a positive integer, got ${input.numHeads}`);
    heads = input.numHeads;
    if (fromConfig !== undefined && fromConfig !== heads) notes.push(`heads = ${heads} from --num-heads (the config says ${fromConfig})`);
  } else if (fromConfig !== undefined) heads = fromConfig;
  else if (fallback) {
    heads = fallback.heads;
    notes.push(`heads = ${heads} assumed (${fallback.why}); pass --num-heads if that is wrong`);
  }
  if (heads === undefined) throw new UserError(`${where}: the number of attention heads is unknown; pass --num-heads`);
  if (d % heads !== 0)
    throw new UserError(`${where}: width ${d} is not divisible by ${heads} heads; the head count does not match the weights (check config.json or --num-heads)`);
  return heads;
}

/** Checks a config value against the value read from the tensors. */
export function agree(w: Weights, what: string, fromConfig: number | undefined, fromTensors: number, tensor: string): void {
  if (fromConfig !== undefined && fromConfig !== fromTensors)
    throw new UserError(
      `${w.file}: config says ${what} = ${fromConfig} but tensor ${w.prefix + tensor} implies ${fromTensors}; the config.json does not belong to these weights`,
    );
}

/** Patch grid of a position embedding with `rows` rows: `special` leading rows + a gh x gw grid. */
export function posGrid(
  w: Weights,
  name: string,
  rows: number,
  specialCandidates: number[],
  preferGrid: [number, number] | undefined,
): { grid: [number, number]; special: number } {
  if (preferGrid) {
    for (const s of specialCandidates) if (rows - s === preferGrid[0] * preferGrid[1]) return { grid: preferGrid, special: s };
  }
  for (const s of specialCandidates) {
    const g = Math.round(Math.sqrt(rows - s));
    if (g > 0 && g * g === rows - s) return { grid: [g, g], special: s };
  }
  throw new UserError(
    `${w.file}: position embedding ${w.prefix + name} has ${rows} rows, which is not a square patch grid plus ${specialCandidates.join(' or ')} special rows; the checkpoint is not a plain ViT`,
  );
}

/** Fills the derived fields and checks the pieces fit together. */
export function finishSpec(spec: Omit<VitSpec, 'headDim' | 'kvHeads' | 'layers'> & { kvHeads?: number; headDim?: number }): VitSpec {
  const out: VitSpec = {
    ...spec,
    headDim: spec.headDim ?? spec.width / spec.heads,
    kvHeads: spec.kvHeads ?? spec.heads,
    layers: spec.blocks.length,
  };
  if (!out.notes?.length) delete out.notes;
  for (const k of Object.keys(out) as (keyof VitSpec)[]) if (out[k] === undefined) delete out[k];
  return out;
}

export function notesFor(spec: { imageSize: [number, number]; patchSize: number; posEmbed?: { grid: [number, number] } }, notes: string[]): void {
  const g = spec.posEmbed?.grid;
  if (g && spec.patchSize > 0) {
    const want: [number, number] = [Math.floor(spec.imageSize[0] / spec.patchSize), Math.floor(spec.imageSize[1] / spec.patchSize)];
    if (want[0] !== g[0] || want[1] !== g[1])
      notes.push(`position embedding grid ${g[0]}x${g[1]} is resized (bicubic) to ${want[0]}x${want[1]} for ${spec.imageSize[0]}x${spec.imageSize[1]} inputs`);
  }
}
