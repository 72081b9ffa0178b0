/**
 * A declarative layout (format.ts) + a checkpoint's tensors -> the canonical VitSpec. Width,
 * MLP width, layer count and the head split come from the tensor shapes; the layout says only
 * the names, the head count and how the block is arranged. Without an `embedding` section the
 * spec is for the weight analysis (svd, compare); `noForward` says why images cannot be run.
 */
import { UserError } from '../../errors.js';
import { finishSpec, posGrid, Weights, type BuildInput } from '../adapter.js';
import { defaultPreprocess } from '../preprocess.js';
import type { BlockSpec, LinearSpec, NormSpec, SpecialToken, VitSpec, WeightRef } from '../spec.js';
import type { LayoutDef, QkvPart, TensorRef } from './format.js';

const fill = (template: string, i: number) => template.replaceAll('{i}', String(i));
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The bias beside a weight: the last `weight` in the name replaced by `bias`. */
function siblingBias(weight: string): string | undefined {
  const k = weight.lastIndexOf('weight');
  return k < 0 ? undefined : weight.slice(0, k) + 'bias' + weight.slice(k + 'weight'.length);
}

/** The query (or fused in-projection) template: the layout's anchor. */
function anchorTemplate(def: LayoutDef): string {
  return (def.attention.qkv ?? def.attention.q!).weight;
}

/**
 * Where the layout's first layer sits: the first candidate prefix that holds it, else the prefix
 * of every name ending in it. Returns the prefixes found (several: ambiguous).
 */
export function layoutPrefixes(def: LayoutDef, names: string[]): string[] {
  const anchor = fill(anchorTemplate(def), 0);
  const set = new Set(names);
  for (const p of def.prefix) if (set.has(p + anchor)) return [p];
  const found = new Set<string>();
  for (const n of names) if (n.endsWith(anchor) && (n.length === anchor.length || n[n.length - anchor.length - 1] === '.')) found.add(n.slice(0, n.length - anchor.length));
  return [...found].sort();
}

export function buildFromLayout(input: BuildInput, def: LayoutDef, layoutFile: string): VitSpec {
  const root = new Weights(input.source);
  const file = root.file;
  const prefixes = layoutPrefixes(def, input.source.names());
  const anchor = anchorTemplate(def);
  if (prefixes.length === 0) throw root.missing(def.prefix[0] + fill(anchor, 0), `the checkpoint does not have the layout ${def.name} (${layoutFile})`);
  if (prefixes.length > 1)
    throw new UserError(
      `${file}: the layout ${def.name} matches ${prefixes.length} models, under ${prefixes.map((p) => JSON.stringify(p)).join(', ')}; ` +
        'write a layout file whose "prefix" names the one to read (see docs/layouts.md)',
    );
  const w = root.withPrefix(prefixes[0]);
  const notes: string[] = [`tensors read with the layout ${def.name}${layoutFile === def.name ? '' : ` (${layoutFile})`}`, ...(def.notes ?? [])];

  // Layers: 1 + the largest i for which the anchor exists (all of 0..L-1 must be there).
  const re = new RegExp(`^${escape(w.prefix + anchor).replaceAll(escape('{i}'), '(\\d+)')}$`);
  let layers = 0;
  for (const n of input.source.names()) {
    const m = re.exec(n);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  if (def.layers !== undefined && def.layers !== layers)
    throw new UserError(`${file}: the layout ${def.name} says layers = ${def.layers} but the checkpoint has ${w.prefix + fill(anchor, 0)} .. ${fill(anchor, layers - 1)} (${layers} layers); fix "layers" or leave it out`);

  // Width from the shapes; heads from --num-heads, the layout's heads, or its headDim.
  const a0 = w.info(fill(anchor, 0));
  if (a0.shape.length !== 2) throw w.shapeError(fill(anchor, 0), a0.shape, [a0.shape[0], a0.shape[a0.shape.length - 1]], 'a linear weight [out, in]');
  const [rows, d] = a0.shape;
  const fused = !!def.attention.qkv;
  const qRows = fused ? undefined : rows;
  const kRows = fused ? undefined : w.info(fill(def.attention.k!.weight, 0)).shape[0];
  const { heads, kvHeads, headDim } = headSplit(input, def, w, file, rows, qRows, kRows, notes);
  const qd = heads * headDim;
  const kd = kvHeads * headDim;

  const lin = (b: Weights, r: TensorRef, i: number, shape?: [number, number], why?: string): LinearSpec => {
    const name = fill(r.weight, i);
    const info = b.info(name);
    if (info.shape.length !== 2) throw b.shapeError(name, info.shape, shape ?? [info.shape[0], d], 'a linear weight [out, in]');
    const weight = b.ref(name, shape, why);
    const out = weight.shape[0];
    const bn = r.bias === null ? undefined : r.bias !== undefined ? fill(r.bias, i) : siblingBias(name);
    const bias = bn === undefined ? undefined : r.bias !== undefined ? b.ref(bn, [out], why) : b.opt(bn, [out], why);
    return bias ? { weight, bias } : { weight };
  };
  const norm = (r: TensorRef, i: number): NormSpec => {
    const name = fill(r.weight, i);
    const weight = w.ref(name, [d], `a ${def.norms.kind} over width ${d}`);
    const bn = def.norms.kind === 'rmsnorm' || r.bias === null ? undefined : r.bias !== undefined ? fill(r.bias, i) : siblingBias(name);
    const bias = bn === undefined ? undefined : r.bias !== undefined ? w.ref(bn, [d]) : w.opt(bn, [d]);
    return { kind: def.norms.kind, weight, ...(bias ? { bias } : {}), eps: def.norms.eps };
  };

  const blocks: BlockSpec[] = [];
  for (let i = 0; i < layers; i++) {
    const at = `layer ${i}`;
    let q: LinearSpec, k: LinearSpec, v: LinearSpec;
    if (fused) {
      const r = def.attention.qkv!;
      const parts = splitFused(w, r, i, d, { q: qd, k: kd, v: kd }, def.attention.split);
      ({ q, k, v } = parts);
    } else {
      q = lin(w, def.attention.q!, i, [qd, d], `${at} query: ${heads} heads of width ${headDim}`);
      k = lin(w, def.attention.k!, i, [kd, d], `${at} key: ${kvHeads} heads of width ${headDim}`);
      v = lin(w, def.attention.v!, i, [kd, d], `${at} value: ${kvHeads} heads of width ${headDim}`);
    }
    const o = lin(w, def.attention.out, i, [d, qd], `${at} attention output`);
    const m = def.mlp;
    let mlp: BlockSpec['mlp'];
    if ('fc1' in m) {
      const fc1 = lin(w, m.fc1, i, undefined);
      mlp = { kind: 'mlp', fc1, fc2: lin(w, m.fc2, i, [d, fc1.weight.shape[0]], `${at} MLP output`) };
    } else if ('w12' in m) {
      const w12 = lin(w, m.w12, i, undefined);
      mlp = { kind: 'swiglu', w12, w3: lin(w, m.w3, i, [d, w12.weight.shape[0] / 2], `${at} SwiGLU output`) };
    } else {
      const gate = lin(w, m.gate, i, undefined);
      const hid = gate.weight.shape[0];
      mlp = { kind: 'swiglu', w12: gate, up: lin(w, m.up, i, [hid, d]), w3: lin(w, m.down, i, [d, hid]) };
    }
    for (const l of mlp.kind === 'mlp' ? [mlp.fc1] : [mlp.w12])
      if (l.weight.shape[1] !== d) throw w.shapeError(l.weight.name.slice(w.prefix.length), l.weight.shape, [l.weight.shape[0], d], `${at} MLP input of width ${d}`);
    // Post-norm (the original Transformer): the spec's norm1 is what produced the block input
    // (VitSpec.postNorm), norm2 the attention sub-block's norm, applied after the residual sum.
    const [norm1, norm2] =
      def.placement === 'pre'
        ? [norm(def.norms.attention, i), norm(def.norms.mlp, i)]
        : [i > 0 ? norm(def.norms.mlp, i - 1) : def.norms.input ? norm(def.norms.input, 0) : identity(def.norms.eps), norm(def.norms.attention, i)];
    blocks.push({ norm1, q, k, v, o, norm2, mlp });
  }
  if (def.placement === 'post') notes.push('post-norm blocks: each block’s norm1 is the norm that produced its input');

  const finalNorm = def.norms.final ? norm(def.norms.final, 0) : undefined;
  const spec: Parameters<typeof finishSpec>[0] = {
    family: `layout:${def.name}`,
    modelId: input.modelId,
    modality: 'vision',
    imageSize: [0, 0],
    patchSize: 0,
    channels: 0,
    width: d,
    heads,
    kvHeads,
    headDim,
    tokenLayout: [],
    blocks,
    ...(finalNorm ? { finalNorm } : {}),
    pooling: 'none',
    activation: def.activation,
    ...(def.placement === 'post' ? { postNorm: true } : {}),
    notes,
  };
  if (def.embedding) addEmbedding(spec, def, w, lin, norm);
  else spec.noForward = def.noForward ?? `the layout ${def.name} describes no patch embedding; add an "embedding" section to a --layout file to run images (docs/layouts.md)`;
  if (def.embedding && def.noForward) spec.noForward = def.noForward;
  return finishSpec(spec);
}

function identity(eps: number): NormSpec {
  return { kind: 'identity', eps };
}

/** q, k, v rows of a fused in-projection, in the layout's split order. */
function splitFused(w: Weights, r: TensorRef, i: number, d: number, size: Record<QkvPart, number>, order: QkvPart[]): Record<QkvPart, LinearSpec> {
  const name = fill(r.weight, i);
  const total = size.q + size.k + size.v;
  const info = w.info(name);
  if (info.shape.length !== 2 || info.shape[0] !== total || info.shape[1] !== d)
    throw w.shapeError(name, info.shape, [total, d], `fused ${order.join(', ')} for width ${d}`);
  const bn = r.bias === null ? undefined : r.bias !== undefined ? fill(r.bias, i) : siblingBias(name);
  const hasBias = bn !== undefined && (r.bias !== undefined || w.has(bn));
  if (hasBias) w.ref(bn!, [total]);
  const out = {} as Record<QkvPart, LinearSpec>;
  let at = 0;
  for (const p of order) {
    out[p] = { weight: w.rows(name, at, at + size[p], [d]), ...(hasBias ? { bias: w.rows(bn!, at, at + size[p], []) } : {}) };
    at += size[p];
  }
  return out;
}

/**
 * Heads, key/value heads and head width. The heads come from --num-heads, the layout's `heads`,
 * or its `headDim`; the head width from the rows: a fused in-projection holds
 * (heads + 2 kvHeads) x headDim rows, a separate query heads x headDim.
 */
function headSplit(
  input: BuildInput,
  def: LayoutDef,
  w: Weights,
  file: string,
  rows: number,
  qRows: number | undefined,
  kRows: number | undefined,
  notes: string[],
): { heads: number; kvHeads: number; headDim: number } {
  const anchor = w.prefix + fill(anchorTemplate(def), 0);
  const fused = qRows === undefined;
  let heads = input.numHeads ?? def.heads;
  if (input.numHeads !== undefined && def.heads !== undefined && def.heads !== input.numHeads) notes.push(`heads = ${input.numHeads} from --num-heads (the layout says ${def.heads})`);
  // --num-heads alone means plain multi-head attention unless the layout says otherwise.
  let kvHeads = def.kvHeads;
  if (heads === undefined && def.headDim !== undefined) {
    const units = rows / def.headDim;
    const h = fused ? (kvHeads !== undefined ? units - 2 * kvHeads : units / 3) : units;
    if (!Number.isInteger(h) || h < 1)
      throw new UserError(`${file}: the layout's headDim ${def.headDim} does not split the ${rows} rows of ${anchor} into heads; fix headDim or pass --num-heads`);
    heads = h;
  }
  if (heads === undefined) {
    const qWidth = fused ? rows / 3 : rows;
    const at64 = Number.isInteger(qWidth / 64) ? `; with heads of width 64 (vit-pytorch's default dim_head) that is --num-heads ${qWidth / 64}` : '';
    throw new UserError(
      `${file}: the layout ${def.name} does not say how many attention heads its query width ${qWidth} holds; pass --num-heads (or set "heads" or "headDim" in a layout file)${at64}`,
    );
  }
  // Separate projections show the key/value heads in the key's rows; a fused one cannot.
  if (kvHeads === undefined && !fused && kRows !== undefined && Number.isInteger(kRows / (rows / heads))) kvHeads = kRows / (rows / heads);
  kvHeads ??= heads;
  if (heads % kvHeads !== 0) throw new UserError(`${file}: ${heads} attention heads are not a multiple of ${kvHeads} key/value heads; fix the layout's kvHeads`);
  const units = fused ? heads + 2 * kvHeads : heads;
  const headDim = rows / units;
  if (!Number.isInteger(headDim))
    throw new UserError(
      `${file}: tensor ${anchor} has ${rows} rows, which do not split into ${fused ? `${heads} query + 2 x ${kvHeads} key/value heads` : `${heads} query heads`}; the head count is wrong (check --num-heads or the layout)`,
    );
  if (kRows !== undefined && kRows !== kvHeads * headDim)
    throw new UserError(`${file}: the key projection has ${kRows} rows but ${kvHeads} key/value heads of width ${headDim} need ${kvHeads * headDim}; set the layout's kvHeads`);
  return { heads, kvHeads, headDim };
}

/** The forward-pass fields from the layout's `embedding` (patch convolution, tokens, positions). */
function addEmbedding(
  spec: Parameters<typeof finishSpec>[0],
  def: LayoutDef,
  w: Weights,
  lin: (b: Weights, r: TensorRef, i: number) => LinearSpec,
  norm: (r: TensorRef, i: number) => NormSpec,
): void {
  const e = def.embedding!;
  const d = spec.width;
  const pname = e.patch.weight;
  const info = w.info(pname);
  if (info.shape.length !== 4 || info.shape[0] !== d || info.shape[2] !== info.shape[3])
    throw w.shapeError(pname, info.shape, [d, info.shape[1] ?? 3, info.shape[2] ?? 16, info.shape[2] ?? 16], 'a square-patch convolution [d, C, p, p]');
  const [, channels, patch] = info.shape;
  const pb = e.patch.bias === null ? undefined : e.patch.bias ?? siblingBias(pname);
  const bias = pb && (e.patch.bias !== undefined || w.has(pb)) ? w.ref(pb, [d]) : undefined;
  const tokenLayout: SpecialToken[] = [];
  let clsToken: WeightRef | undefined;
  if (e.cls) {
    clsToken = w.ref(e.cls, [d], 'a class token [d]');
    tokenLayout.push('cls');
  }
  let registerTokens: WeightRef | undefined;
  if (e.registers) {
    const s = w.info(e.registers).shape;
    const r = s.length === 3 ? s[1] : s[0];
    registerTokens = w.ref(e.registers, [r, d], 'register tokens [R, d]');
    for (let i = 0; i < r; i++) tokenLayout.push('reg');
  }
  let image = e.imageSize;
  if (e.pos) {
    const s = w.info(e.pos).shape;
    const rows = s.length === 3 ? s[1] : s[0];
    const hint: [number, number] | undefined = image ? [Math.floor(image / patch), Math.floor(image / patch)] : undefined;
    const { grid, special } = posGrid(w, e.pos, rows, [...new Set([clsToken ? 1 : 0, 0])], hint);
    spec.posEmbed = { weight: w.ref(e.pos, [rows, d]), grid, special };
    image ??= grid[0] * patch;
  }
  if (!image) throw new UserError(`${w.file}: the layout ${def.name} has no position embedding and no embedding.imageSize; set "imageSize" (see docs/layouts.md)`);
  const hasPre = !!(e.mean && e.std);
  Object.assign(spec, {
    imageSize: [image, image],
    patchSize: patch,
    channels,
    tokenLayout,
    patchEmbed: { kind: 'conv', weight: w.ref(pname), ...(bias ? { bias } : {}) },
    ...(clsToken ? { clsToken } : {}),
    ...(registerTokens ? { registerTokens } : {}),
    ...(e.pre ? { preNorm: norm(e.pre, 0) } : {}),
    ...(hasPre ? { preprocess: defaultPreprocess([image, image], { mean: e.mean!, std: e.std!, resample: 'bicubic' }) } : {}),
  });
  if (def.head) {
    const head = lin(w, def.head, 0);
    if (head.weight.shape[1] !== d) throw w.shapeError(def.head.weight, head.weight.shape, [head.weight.shape[0], d], `a classifier on width ${d}`);
    spec.head = head;
  }
  spec.pooling = def.head ? (def.pooling ?? (clsToken ? 'cls' : 'mean')) : 'none';
  if (spec.pooling === 'cls' && !clsToken) throw new UserError(`${w.file}: the layout ${def.name} pools the CLS token but has no embedding.cls`);
  if (def.fcNorm) spec.fcNorm = norm(def.fcNorm, 0);
}
