/**
 * The declarative layout format (`--layout FILE.json`, and the built-in presets): how the
 * tensors of a PyTorch transformer are named, so that any ViT-like state dict can be read
 * without code. docs/layouts.md documents it with examples. Names are templates in which `{i}`
 * stands for the 0-based layer index; they are relative to the prefix the model sits under.
 *
 * A linear or norm is given as its weight tensor's template; its bias is the tensor whose name
 * has the last `weight` replaced by `bias` (`x.weight` -> `x.bias`, `in_proj_weight` ->
 * `in_proj_bias`), used when present. `{ "weight": T, "bias": T | null }` says it explicitly
 * (null: no bias).
 *
 * Parsing checks every key and value and refuses unknown keys (a typo must not be ignored):
 * each problem is one UserError naming the file and the key.
 */
import { UserError } from '../../errors.js';
import type { Activation, Pooling } from '../spec.js';

/** A weight tensor template with its bias: explicit, or (undefined) found by the weight -> bias rule. */
export interface TensorRef {
  weight: string;
  /** null: no bias; undefined: the sibling `…bias` tensor when it exists. */
  bias?: string | null;
}

export type QkvPart = 'q' | 'k' | 'v';

export interface LayoutDef {
  /** Shown as the family `layout:<name>`. */
  name: string;
  description?: string;
  /**
   * Candidate prefixes the model may sit under, tried in order ('' = top level). When none holds
   * the first layer's query tensor, a unique prefix ending in it is used (e.g. `module.encoder.`).
   */
  prefix: string[];
  /** Number of layers; default: counted from the query (or fused in-projection) template. */
  layers?: number;
  /** Attention heads, or `headDim` (heads = query width / headDim). `--num-heads` wins. */
  heads?: number;
  headDim?: number;
  /** Key/value heads (grouped-query attention); default `heads`. */
  kvHeads?: number;
  attention: {
    /** A fused in-projection [q; k; v] (rows in `split` order)... */
    qkv?: TensorRef;
    split: QkvPart[];
    /** ...or separate projections. */
    q?: TensorRef;
    k?: TensorRef;
    v?: TensorRef;
    out: TensorRef;
  };
  /**
   * 'pre': each norm is applied to its sub-block's input (ViT, norm_first=True); 'post': to the
   * residual sum after it (the original Transformer, nn.TransformerEncoderLayer's default).
   */
  placement: 'pre' | 'post';
  norms: {
    kind: 'layernorm' | 'rmsnorm';
    eps: number;
    /** The norm of the attention sub-block, and of the MLP sub-block. */
    attention: TensorRef;
    mlp: TensorRef;
    /** After the last block. */
    final?: TensorRef;
    /** Post-norm: the norm that produced block 0's input (an embedding LayerNorm), if any. */
    input?: TensorRef;
  };
  mlp: { fc1: TensorRef; fc2: TensorRef } | { w12: TensorRef; w3: TensorRef } | { gate: TensorRef; up: TensorRef; down: TensorRef };
  activation: Activation;
  /** What the forward pass needs beyond the blocks; without it the layout is for weight analysis. */
  embedding?: {
    /** Patch convolution [d, C, p, p]. */
    patch: TensorRef;
    cls?: string;
    registers?: string;
    /** Position embedding [special + grid², d] (special rows for the CLS token first). */
    pos?: string;
    /** Input size in pixels; default: the position grid times the patch size. */
    imageSize?: number;
    /** Pre-blocks norm (CLIP's pre_layrnorm). */
    pre?: TensorRef;
    mean?: [number, number, number];
    std?: [number, number, number];
  };
  head?: TensorRef;
  pooling?: Extract<Pooling, 'cls' | 'mean'>;
  /** Norm after mean pooling (timm fc_norm). */
  fcNorm?: TensorRef;
  /** Why the forward pass cannot be built (a CNN stem, a patch embedding the runtime lacks). */
  noForward?: string;
  /** Notes shown with the model (e.g. what the preset assumed). */
  notes?: string[];
}

type J = Record<string, unknown>;

const ACTIVATIONS: Activation[] = ['gelu', 'gelu_tanh', 'quick_gelu', 'relu', 'silu'];

/** Parses and checks a layout given as JSON text or value; `file` names it in messages. */
export function parseLayout(value: unknown, file: string): LayoutDef {
  const bad = (key: string, v: unknown, want: string): never => {
    throw new UserError(`${file}: layout key ${key} = ${JSON.stringify(v)}; expected ${want} (see docs/layouts.md)`);
  };
  const isObj = (v: unknown): v is J => !!v && typeof v === 'object' && !Array.isArray(v);
  const known = (o: J, where: string, keys: string[]) => {
    for (const k of Object.keys(o)) if (!keys.includes(k)) throw new UserError(`${file}: unknown layout key ${where}${k} (known here: ${keys.join(', ')}; see docs/layouts.md)`);
  };
  const str = (v: unknown, key: string, perLayer?: boolean): string => {
    if (typeof v !== 'string' || v === '') return bad(key, v, 'a tensor name');
    if (perLayer === true && !v.includes('{i}')) return bad(key, v, 'a per-layer tensor name template containing {i}');
    if (perLayer === false && v.includes('{i}')) return bad(key, v, 'a tensor name without {i} (not per layer)');
    return v;
  };
  const ref = (v: unknown, key: string, perLayer: boolean): TensorRef => {
    if (typeof v === 'string') return { weight: str(v, key, perLayer) };
    if (!isObj(v)) return bad(key, v, 'a tensor name, or {"weight": name, "bias": name or null}');
    known(v, `${key}.`, ['weight', 'bias']);
    const r: TensorRef = { weight: str(v.weight, `${key}.weight`, perLayer) };
    if (v.bias === null) r.bias = null;
    else if (v.bias !== undefined) r.bias = str(v.bias, `${key}.bias`, perLayer);
    return r;
  };
  const optRef = (v: unknown, key: string, perLayer: boolean) => (v === undefined ? undefined : ref(v, key, perLayer));
  const count = (v: unknown, key: string, max: number): number | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) return bad(key, v, `a whole number from 1 to ${max}`);
    return v;
  };
  const triple = (v: unknown, key: string, positive: boolean): [number, number, number] | undefined => {
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0)))
      return bad(key, v, `three ${positive ? 'positive ' : ''}numbers`);
    return [v[0], v[1], v[2]];
  };

  if (!isObj(value)) throw new UserError(`${file}: a layout is a JSON object (see docs/layouts.md)`);
  known(value, '', ['name', 'description', 'prefix', 'layers', 'heads', 'headDim', 'kvHeads', 'attention', 'placement', 'norms', 'mlp', 'activation', 'embedding', 'head', 'pooling', 'fcNorm', 'noForward', 'notes']);
  const name = str(value.name, 'name', false);
  if (!/^[\w.+-]+$/.test(name)) bad('name', name, 'letters, digits, and . _ + -');
  const prefix = value.prefix === undefined ? [''] : typeof value.prefix === 'string' ? [value.prefix] : value.prefix;
  if (!Array.isArray(prefix) || prefix.length === 0 || !prefix.every((p) => typeof p === 'string' && (p === '' || p.endsWith('.'))))
    bad('prefix', value.prefix, 'a prefix ending in "." (or ""), or a list of them');

  const a = value.attention;
  if (!isObj(a)) return bad('attention', a, 'an object with qkv (fused) or q, k, v, and out');
  known(a, 'attention.', ['qkv', 'split', 'q', 'k', 'v', 'out']);
  const split = a.split === undefined ? ['q', 'k', 'v'] : a.split;
  if (!Array.isArray(split) || split.length !== 3 || [...split].sort().join() !== 'k,q,v') bad('attention.split', a.split, 'an order of "q", "k", "v" such as ["q", "k", "v"]');
  const attention: LayoutDef['attention'] = { split: split as QkvPart[], out: ref(a.out, 'attention.out', true) };
  if (a.qkv !== undefined) {
    if (a.q !== undefined || a.k !== undefined || a.v !== undefined) throw new UserError(`${file}: layout key attention: give either qkv (fused) or q, k, v, not both`);
    attention.qkv = ref(a.qkv, 'attention.qkv', true);
  } else {
    attention.q = ref(a.q, 'attention.q', true);
    attention.k = ref(a.k, 'attention.k', true);
    attention.v = ref(a.v, 'attention.v', true);
  }

  const placement = value.placement ?? 'pre';
  if (placement !== 'pre' && placement !== 'post') bad('placement', placement, '"pre" or "post"');
  const n = value.norms;
  if (!isObj(n)) return bad('norms', n, 'an object with attention, mlp (and final, eps)');
  known(n, 'norms.', ['kind', 'eps', 'attention', 'mlp', 'final', 'input']);
  const kind = n.kind ?? 'layernorm';
  if (kind !== 'layernorm' && kind !== 'rmsnorm') bad('norms.kind', kind, '"layernorm" or "rmsnorm"');
  const eps = n.eps ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0 && eps < 1)) bad('norms.eps', eps, 'a number between 0 and 1');
  const norms: LayoutDef['norms'] = {
    kind: kind as 'layernorm' | 'rmsnorm',
    eps: eps as number,
    attention: ref(n.attention, 'norms.attention', true),
    mlp: ref(n.mlp, 'norms.mlp', true),
  };
  const final = optRef(n.final, 'norms.final', false);
  if (final) norms.final = final;
  const input = optRef(n.input, 'norms.input', false);
  if (input) norms.input = input;

  const m = value.mlp;
  if (!isObj(m)) return bad('mlp', m, 'an object with fc1, fc2 (or w12, w3, or gate, up, down)');
  let mlp: LayoutDef['mlp'];
  if (m.fc1 !== undefined) {
    known(m, 'mlp.', ['fc1', 'fc2']);
    mlp = { fc1: ref(m.fc1, 'mlp.fc1', true), fc2: ref(m.fc2, 'mlp.fc2', true) };
  } else if (m.w12 !== undefined) {
    known(m, 'mlp.', ['w12', 'w3']);
    mlp = { w12: ref(m.w12, 'mlp.w12', true), w3: ref(m.w3, 'mlp.w3', true) };
  } else {
    known(m, 'mlp.', ['gate', 'up', 'down']);
    mlp = { gate: ref(m.gate, 'mlp.gate', true), up: ref(m.up, 'mlp.up', true), down: ref(m.down, 'mlp.down', true) };
  }
  const act = value.activation ?? 'gelu';
  if (!ACTIVATIONS.includes(act as Activation)) bad('activation', act, ACTIVATIONS.map((x) => `"${x}"`).join(', '));

  const def: LayoutDef = { name, prefix: prefix as string[], attention, placement: placement as 'pre' | 'post', norms, mlp, activation: act as Activation };
  if (value.description !== undefined) def.description = str(value.description, 'description');
  const layers = count(value.layers, 'layers', 1024);
  if (layers !== undefined) def.layers = layers;
  const heads = count(value.heads, 'heads', 4096);
  if (heads !== undefined) def.heads = heads;
  const headDim = count(value.headDim, 'headDim', 4096);
  if (headDim !== undefined) def.headDim = headDim;
  const kvHeads = count(value.kvHeads, 'kvHeads', 4096);
  if (kvHeads !== undefined) def.kvHeads = kvHeads;

  if (value.embedding !== undefined) {
    const e = value.embedding;
    if (!isObj(e)) return bad('embedding', e, 'an object with patch (and cls, pos, registers, imageSize, pre, mean, std)');
    known(e, 'embedding.', ['patch', 'cls', 'registers', 'pos', 'imageSize', 'pre', 'mean', 'std']);
    def.embedding = { patch: ref(e.patch, 'embedding.patch', false) };
    for (const k of ['cls', 'registers', 'pos'] as const) if (e[k] !== undefined) def.embedding[k] = str(e[k], `embedding.${k}`, false);
    const size = count(e.imageSize, 'embedding.imageSize', 4096);
    if (size !== undefined) def.embedding.imageSize = size;
    const pre = optRef(e.pre, 'embedding.pre', false);
    if (pre) def.embedding.pre = pre;
    const mean = triple(e.mean, 'embedding.mean', false);
    if (mean) def.embedding.mean = mean;
    const std = triple(e.std, 'embedding.std', true);
    if (std) def.embedding.std = std;
  }
  const head = optRef(value.head, 'head', false);
  if (head) def.head = head;
  if (value.pooling !== undefined) {
    if (value.pooling !== 'cls' && value.pooling !== 'mean') bad('pooling', value.pooling, '"cls" or "mean"');
    def.pooling = value.pooling as 'cls' | 'mean';
  }
  const fcNorm = optRef(value.fcNorm, 'fcNorm', false);
  if (fcNorm) def.fcNorm = fcNorm;
  if (value.noForward !== undefined) def.noForward = str(value.noForward, 'noForward');
  if (value.notes !== undefined) {
    if (!Array.isArray(value.notes) || !value.notes.every((x) => typeof x === 'string')) bad('notes', value.notes, 'a list of strings');
    def.notes = value.notes as string[];
  }
  return def;
}
