/**
 * A deliberately naive float64 ViT forward pass: plain loops over a VitSpec, written from the
 * reference implementations (HF transformers / timm) and sharing no code with the ONNX graph
 * builder. One image at a time. Used only to check the runtime's numbers.
 */
import { loadWeight, type VitSpec, type WeightRef, type NormSpec, type LinearSpec } from '../../src/arch/spec.js';

export interface NaiveResult {
  /** Per layer [T*d]. */
  ln: Float64Array[];
  residual: Float64Array[];
  /** Per layer [H*T*T]. */
  attention: Float64Array[];
  final: Float64Array;
  features?: Float64Array;
  logits?: Float64Array;
  tokens: number;
}

async function w64(ref: WeightRef | undefined): Promise<Float64Array | undefined> {
  if (!ref) return undefined;
  return Float64Array.from(await loadWeight(ref));
}

function layerNorm(x: Float64Array, rows: number, dim: number, n: NormSpec, g?: Float64Array, b?: Float64Array): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[r * dim + i];
    mean /= dim;
    let v = 0;
    for (let i = 0; i < dim; i++) v += (x[r * dim + i] - mean) ** 2;
    v /= dim;
    const inv = 1 / Math.sqrt(v + n.eps);
    for (let i = 0; i < dim; i++) {
      let z = (x[r * dim + i] - mean) * inv;
      if (g) z *= g[i];
      if (b) z += b[i];
      y[r * dim + i] = z;
    }
  }
  return y;
}

async function applyNorm(x: Float64Array, rows: number, dim: number, n: NormSpec): Promise<Float64Array> {
  return layerNorm(x, rows, dim, n, await w64(n.weight), await w64(n.bias));
}

/** y[r, o] = sum_i x[r, i] W[o, i] + b[o]. */
async function applyLinear(x: Float64Array, rows: number, lin: LinearSpec): Promise<{ y: Float64Array; out: number }> {
  const W = (await w64(lin.weight))!;
  const out = lin.weight.shape[0];
  const inn = W.length / out;
  const b = await w64(lin.bias);
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < out; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inn; i++) s += x[r * inn + i] * W[o * inn + i];
      y[r * out + o] = s;
    }
  }
  return { y, out };
}

function erf(x: number): number {
  // Abramowitz-Stegun is not accurate enough; use a series / continued fraction in float64.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series
    let sum = x;
    let term = x;
    const x2 = x * x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction for large |x|
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}

function act(kind: VitSpec['activation'], x: number): number {
  switch (kind) {
    case 'gelu':
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_tanh':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    case 'quick_gelu':
      return x / (1 + Math.exp(-1.702 * x));
    case 'relu':
      return Math.max(0, x);
    case 'silu':
      return x / (1 + Math.exp(-x));
  }
}

/** torch.nn.functional.interpolate(mode='bicubic', align_corners=False) along one axis. */
function cubicAxis(src: number[][], outLen: number): number[][] {
  // src: [inLen][vec]
  const inLen = src.length;
  const A = -0.75;
  const k = (t: number) => {
    const a = Math.abs(t);
    if (a <= 1) return (A + 2) * a ** 3 - (A + 3) * a ** 2 + 1;
    if (a < 2) return A * a ** 3 - 5 * A * a ** 2 + 8 * A * a - 4 * A;
    return 0;
  };
  const out: number[][] = [];
  for (let o = 0; o < outLen; o++) {
    const pos = ((o + 0.5) * inLen) / outLen - 0.5;
    const base = Math.floor(pos);
    const v = new Array<number>(src[0].length).fill(0);
    for (let m = -1; m <= 2; m++) {
      const wt = k(pos - (base + m));
      const idx = Math.min(inLen - 1, Math.max(0, base + m));
      for (let c = 0; c < v.length; c++) v[c] += wt * src[idx][c];
    }
    out.push(v);
  }
  return out;
}

/** Pillow/torch-antialias bicubic (a = -0.5, support scaled when shrinking), one axis. */
function aaCubicAxis(src: number[][], outLen: number): number[][] {
  const inLen = src.length;
  const a = -0.5;
  const k = (t: number) => {
    const x = Math.abs(t);
    if (x < 1) return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1;
    if (x < 2) return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a;
    return 0;
  };
  const scale = inLen / outLen;
  const fs = Math.max(1, scale);
  const out: number[][] = [];
  for (let o = 0; o < outLen; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - 2 * fs + 0.5));
    const hi = Math.min(inLen, Math.trunc(center + 2 * fs + 0.5));
    const ws: number[] = [];
    for (let i = lo; i < hi; i++) ws.push(k((i - center + 0.5) / fs));
    const tot = ws.reduce((p, q) => p + q, 0);
    const v = new Array<number>(src[0].length).fill(0);
    for (let i = lo; i < hi; i++) for (let c = 0; c < v.length; c++) v[c] += (ws[i - lo] / tot) * src[i][c];
    out.push(v);
  }
  return out;
}

function interpolateGrid(pos: Float64Array, gh: number, gw: number, d: number, oh: number, ow: number, aa: boolean): Float64Array {
  const f = aa ? aaCubicAxis : cubicAxis;
  // vertical: for each column, resample rows
  const cols: number[][][] = [];
  for (let c = 0; c < gw; c++) {
    const col: number[][] = [];
    for (let r = 0; r < gh; r++) col.push(Array.from(pos.subarray((r * gw + c) * d, (r * gw + c + 1) * d)));
    cols.push(f(col, oh));
  }
  const out = new Float64Array(oh * ow * d);
  for (let r = 0; r < oh; r++) {
    const row: number[][] = [];
    for (let c = 0; c < gw; c++) row.push(cols[c][r]);
    const res = f(row, ow);
    for (let c = 0; c < ow; c++) for (let i = 0; i < d; i++) out[(r * ow + c) * d + i] = res[c][i];
  }
  return out;
}

/**
 * Runs one image [C, Hs, Ws] (already normalised) through the spec. Layout: tokenLayout
 * special tokens (registers expanded from the register tensor), then patches.
 */
export async function naiveForward(spec: VitSpec, image: Float32Array | Float64Array, imageSize: [number, number] = spec.imageSize): Promise<NaiveResult> {
  const d = spec.width;
  const H = spec.heads;
  const dh = spec.headDim;
  const p = spec.patchSize;
  const C = spec.channels;
  const [Hs, Ws] = imageSize;
  const gh = Math.floor(Hs / p);
  const gw = Math.floor(Ws / p);
  const P = gh * gw;

  // Patch embedding: conv with stride p.
  const cw = (await w64(spec.patchEmbed!.weight))!;
  const cb = await w64(spec.patchEmbed!.bias);
  const patchTok: Float64Array[] = [];
  for (let py = 0; py < gh; py++) {
    for (let px = 0; px < gw; px++) {
      const v = new Float64Array(d);
      for (let o = 0; o < d; o++) {
        let s = cb ? cb[o] : 0;
        for (let c = 0; c < C; c++)
          for (let ky = 0; ky < p; ky++)
            for (let kx = 0; kx < p; kx++) s += cw[((o * C + c) * p + ky) * p + kx] * image[(c * Hs + py * p + ky) * Ws + px * p + kx];
        v[o] = s;
      }
      patchTok.push(v);
    }
  }

  // Special tokens.
  const regData = await w64(spec.registerTokens);
  const nReg = regData ? regData.length / d : 0;
  const specials: { kind: string; v: Float64Array }[] = [];
  let regSeen = false;
  for (const t of spec.tokenLayout) {
    if (t === 'cls') specials.push({ kind: 'cls', v: (await w64(spec.clsToken))!.slice(0, d) });
    else if (t === 'dist') specials.push({ kind: 'dist', v: (await w64(spec.distToken))!.slice(0, d) });
    else if (t === 'reg') {
      if (regSeen) continue; // registers are listed once or per register: expand from the tensor
      regSeen = true;
      for (let r = 0; r < nReg; r++) specials.push({ kind: 'reg', v: regData!.slice(r * d, (r + 1) * d) });
    }
  }
  if (!regSeen && nReg) for (let r = 0; r < nReg; r++) specials.push({ kind: 'reg', v: regData!.slice(r * d, (r + 1) * d) });

  // Absolute position embedding.
  if (spec.posEmbed) {
    const pos = (await w64(spec.posEmbed.weight))!;
    const ns = spec.posEmbed.special;
    for (let i = 0; i < ns; i++) for (let c = 0; c < d; c++) specials[i].v[c] += pos[i * d + c];
    let pp: Float64Array = pos.slice(ns * d);
    const [ph, pw] = spec.posEmbed.grid;
    // timm (resample_abs_pos_embed) and HF DINOv2-with-registers interpolate with antialias=True.
    if (ph !== gh || pw !== gw) pp = interpolateGrid(pp, ph, pw, d, gh, gw, spec.family.startsWith('timm') || spec.family === 'hf-dinov2-registers');
    for (let t = 0; t < P; t++) for (let c = 0; c < d; c++) patchTok[t][c] += pp[t * d + c];
  }
  const S = specials.length;
  const T = S + P;
  let x: Float64Array = new Float64Array(T * d);
  specials.forEach((s, i) => x.set(s.v, i * d));
  patchTok.forEach((v, t) => x.set(v, (S + t) * d));
  if (spec.preNorm) x = await applyNorm(x, T, d, spec.preNorm);

  const res: NaiveResult = { ln: [], residual: [], attention: [], final: new Float64Array(0), tokens: T };
  for (const b of spec.blocks) {
    res.residual.push(x.slice());
    const ln = await applyNorm(x, T, d, b.norm1);
    res.ln.push(ln);
    const q = (await applyLinear(ln, T, b.q)).y;
    const k = (await applyLinear(ln, T, b.k)).y;
    const v = (await applyLinear(ln, T, b.v)).y;
    const A = new Float64Array(H * T * T);
    let bias: Float64Array | undefined;
    if (b.relPosBias) bias = await relBias(b.relPosBias.table, b.relPosBias.window, H, T, S);
    const ctx = new Float64Array(T * H * dh);
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < T; i++) {
        const row = new Float64Array(T);
        let mx = -Infinity;
        for (let j = 0; j < T; j++) {
          let s = 0;
          for (let c = 0; c < dh; c++) s += q[i * H * dh + h * dh + c] * k[j * H * dh + h * dh + c];
          s /= Math.sqrt(dh);
          if (bias) s += bias[(h * T + i) * T + j];
          row[j] = s;
          mx = Math.max(mx, s);
        }
        let z = 0;
        for (let j = 0; j < T; j++) {
          row[j] = Math.exp(row[j] - mx);
          z += row[j];
        }
        for (let j = 0; j < T; j++) {
          row[j] /= z;
          A[(h * T + i) * T + j] = row[j];
        }
        for (let c = 0; c < dh; c++) {
          let s = 0;
          for (let j = 0; j < T; j++) s += row[j] * v[j * H * dh + h * dh + c];
          ctx[i * H * dh + h * dh + c] = s;
        }
      }
    }
    res.attention.push(A);
    const o = (await applyLinear(ctx, T, b.o)).y;
    const ls1 = await w64(b.ls1);
    for (let t = 0; t < T; t++) for (let c = 0; c < d; c++) x[t * d + c] += o[t * d + c] * (ls1 ? ls1[c] : 1);
    const ln2 = await applyNorm(x, T, d, b.norm2);
    let m: Float64Array;
    if (b.mlp.kind === 'mlp') {
      const h1 = await applyLinear(ln2, T, b.mlp.fc1);
      for (let i = 0; i < h1.y.length; i++) h1.y[i] = act(spec.activation, h1.y[i]);
      m = (await applyLinear(h1.y, T, b.mlp.fc2)).y;
    } else {
      const h12 = await applyLinear(ln2, T, b.mlp.w12);
      const half = h12.out / 2;
      const hid = new Float64Array(T * half);
      for (let t = 0; t < T; t++)
        for (let c = 0; c < half; c++) {
          const a = h12.y[t * h12.out + c];
          hid[t * half + c] = (a / (1 + Math.exp(-a))) * h12.y[t * h12.out + half + c];
        }
      m = (await applyLinear(hid, T, b.mlp.w3)).y;
    }
    const ls2 = await w64(b.ls2);
    for (let t = 0; t < T; t++) for (let c = 0; c < d; c++) x[t * d + c] += m[t * d + c] * (ls2 ? ls2[c] : 1);
  }
  const fin = spec.finalNorm ? await applyNorm(x, T, d, spec.finalNorm) : x;
  res.final = fin;

  const clsIdx = specials.findIndex((s) => s.kind === 'cls');
  const distIdx = specials.findIndex((s) => s.kind === 'dist');
  const meanPatches = () => {
    const m = new Float64Array(d);
    for (let t = S; t < T; t++) for (let c = 0; c < d; c++) m[c] += fin[t * d + c] / P;
    return m;
  };
  let feat: Float64Array;
  if (spec.pooling === 'mean') feat = meanPatches();
  else if (spec.pooling === 'attention') feat = await attentionPoolHead(spec, fin, T);
  else if (clsIdx >= 0) {
    feat = fin.slice(clsIdx * d, clsIdx * d + d);
    // transformers' Dinov2(WithRegisters)ForImageClassification: cat([CLS, mean(patch tokens)]).
    if (spec.pooling === 'cls+mean') {
      const both = new Float64Array(2 * d);
      both.set(feat);
      both.set(meanPatches(), d);
      feat = both;
    }
  } else feat = meanPatches();
  if (spec.fcNorm) feat = await applyNorm(feat, 1, feat.length, spec.fcNorm);
  res.features = feat;
  if (spec.pooling === 'attention' && !spec.head) res.logits = feat; // SigLIP: the pooler_output is the embedding
  else if (spec.head && spec.pooling !== 'none') {
    let logits = (await applyLinear(feat, 1, spec.head)).y;
    if (spec.distHead) {
      const dl = (await applyLinear(fin.slice(distIdx * d, distIdx * d + d), 1, spec.distHead)).y;
      logits = logits.map((v, i) => (v + dl[i]) / 2);
    }
    res.logits = logits;
  }
  return res;
}

/**
 * transformers' SiglipMultiheadAttentionPoolingHead, written out: nn.MultiheadAttention with the
 * probe as the one query and every final token as key and value (per head: softmax(q·k/√d_h)),
 * out_proj, then a + MLP(LayerNorm(a)).
 */
async function attentionPoolHead(spec: VitSpec, fin: Float64Array, T: number): Promise<Float64Array> {
  const ap = spec.attnPool!;
  const d = spec.width;
  const H = ap.heads;
  const dh = d / H;
  const probe = (await w64(ap.probe))!;
  const q = (await applyLinear(probe, 1, ap.q)).y;
  const k = (await applyLinear(fin, T, ap.k)).y;
  const v = (await applyLinear(fin, T, ap.v)).y;
  const ctx = new Float64Array(d);
  for (let h = 0; h < H; h++) {
    const s = new Float64Array(T);
    for (let j = 0; j < T; j++) {
      let dot = 0;
      for (let c = 0; c < dh; c++) dot += q[h * dh + c] * k[j * d + h * dh + c];
      s[j] = dot / Math.sqrt(dh);
    }
    const mx = Math.max(...s);
    let z = 0;
    for (let j = 0; j < T; j++) z += (s[j] = Math.exp(s[j] - mx));
    for (let c = 0; c < dh; c++) {
      let acc = 0;
      for (let j = 0; j < T; j++) acc += (s[j] / z) * v[j * d + h * dh + c];
      ctx[h * dh + c] = acc;
    }
  }
  const a = (await applyLinear(ctx, 1, ap.o)).y;
  const h1 = await applyLinear(await applyNorm(a, 1, d, ap.norm), 1, ap.fc1);
  for (let i = 0; i < h1.y.length; i++) h1.y[i] = act(spec.activation, h1.y[i]);
  const m = (await applyLinear(h1.y, 1, ap.fc2)).y;
  return a.map((x, i) => x + m[i]);
}

/** BEiT's relative position bias, built the way HF builds relative_position_index. */
async function relBias(table: WeightRef, window: [number, number], H: number, T: number, S: number): Promise<Float64Array> {
  const tab = (await w64(table))!;
  const [wh, ww] = window;
  const nrd = (2 * wh - 1) * (2 * ww - 1) + 3;
  const coords: [number, number][] = [];
  for (let r = 0; r < wh; r++) for (let c = 0; c < ww; c++) coords.push([r, c]);
  const N = wh * ww;
  const index: number[][] = Array.from({ length: N + 1 }, () => new Array<number>(N + 1).fill(0));
  for (let i = 0; i < N; i++)
    for (let j = 0; j < N; j++) {
      const r0 = coords[i][0] - coords[j][0] + wh - 1;
      const r1 = coords[i][1] - coords[j][1] + ww - 1;
      index[i + 1][j + 1] = r0 * (2 * ww - 1) + r1;
    }
  for (let j = 0; j <= N; j++) index[0][j] = nrd - 3;
  for (let i = 0; i <= N; i++) index[i][0] = nrd - 2;
  index[0][0] = nrd - 1;
  if (S !== 1 || T !== N + 1) throw new Error('naive relBias: expects exactly one CLS token and the window grid');
  const out = new Float64Array(H * T * T);
  for (let h = 0; h < H; h++) for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) out[(h * T + i) * T + j] = tab[index[i][j] * H + h];
  return out;
}
