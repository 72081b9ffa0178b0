/**
 * Resampling, written to match the libraries the checkpoints were trained with:
 *
 * - `pilResizeU8`: Pillow's `Image.resize` on 8-bit images (what HF image processors and
 *   torchvision/timm transforms call): separable convolution, horizontal pass first, with
 *   Pillow's kernels (bilinear = triangle, bicubic a = -0.5, lanczos a = 3), support scaled by
 *   the downscale factor (antialiasing), 22-bit fixed-point coefficients and the intermediate
 *   image rounded to uint8. NEAREST is Pillow's affine nearest: src = floor((x + 0.5) * scale),
 *   with Pillow's step-by-step accumulation of the coordinate.
 * - `resizeGridF64`: resampling of a float grid (position-embedding interpolation) as
 *   `torch.nn.functional.interpolate(mode='bicubic', align_corners=False)` does, without
 *   antialias (HF ViT/DINOv2/CLIP/SigLIP: A = -0.75, size-based scale) or with it (timm's
 *   `resample_abs_pos_embed`: antialias=True, which uses Pillow's a = -0.5 kernel).
 */

export type PilFilter = 'nearest' | 'bilinear' | 'bicubic' | 'lanczos';

interface Filter {
  support: number;
  fn: (x: number) => number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

function bicubicA(a: number) {
  return (x: number): number => {
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
  };
}

const FILTERS: Record<Exclude<PilFilter, 'nearest'>, Filter> = {
  bilinear: { support: 1, fn: (x) => (x < 0 ? (x > -1 ? 1 + x : 0) : x < 1 ? 1 - x : 0) },
  bicubic: { support: 2, fn: bicubicA(-0.5) },
  lanczos: { support: 3, fn: (x) => (x > -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

/** Per output index: first input index, count, and normalised float64 weights (Pillow's precompute_coeffs). */
export interface Coeffs {
  start: Int32Array;
  size: Int32Array;
  ksize: number;
  weights: Float64Array; // [out, ksize]
}

export function pilCoeffs(inSize: number, outSize: number, filter: Exclude<PilFilter, 'nearest'>): Coeffs {
  const f = FILTERS[filter];
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = f.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const size = new Int32Array(outSize);
  const weights = new Float64Array(outSize * ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = f.fn((x + xmin - center + 0.5) * ss);
      weights[xx * ksize + x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) if (ww !== 0) weights[xx * ksize + x] /= ww;
    start[xx] = xmin;
    size[xx] = xmax;
  }
  return { start, size, ksize, weights };
}

const PRECISION_BITS = 32 - 8 - 2;

function fixedPoint(c: Coeffs): Int32Array {
  const k = new Int32Array(c.weights.length);
  for (let i = 0; i < k.length; i++) {
    const v = c.weights[i] * (1 << PRECISION_BITS);
    k[i] = v < 0 ? Math.trunc(-0.5 + v) : Math.trunc(0.5 + v);
  }
  return k;
}

function clip8(v: number): number {
  const x = Math.floor(v / (1 << PRECISION_BITS)); // arithmetic shift
  return x < 0 ? 0 : x > 255 ? 255 : x;
}

/** The part [x0, x1) × [y0, y1) of the resized image to compute (a centre crop needs only it). */
export interface Region {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/**
 * Pillow-exact resize of an interleaved 8-bit image (`channels` per pixel) to outW x outH, or
 * only `region` of it: each output pixel depends only on its own coefficients, so computing the
 * cropped part alone gives the same bytes as resizing everything and cropping (and the
 * horizontal pass then runs only over the input rows the vertical pass reads).
 */
export function pilResizeU8(src: Uint8Array, w: number, h: number, channels: number, outW: number, outH: number, filter: PilFilter, region?: Region): Uint8Array {
  const r = region ?? { x0: 0, y0: 0, x1: outW, y1: outH };
  if (!(r.x0 >= 0 && r.y0 >= 0 && r.x1 <= outW && r.y1 <= outH && r.x0 <= r.x1 && r.y0 <= r.y1)) throw new RangeError(`resize region ${JSON.stringify(r)} outside ${outW}x${outH}`);
  const rw = r.x1 - r.x0;
  const rh = r.y1 - r.y0;
  if (filter === 'nearest') {
    // Pillow's ImagingScaleAffine: source coordinates accumulated step by step in doubles
    // (xo = a0 / 2, then xo += a0), truncated; the accumulation decides exact-integer ties.
    const table = (inSize: number, outSize: number) => {
      const a0 = inSize / outSize;
      const t = new Int32Array(outSize);
      let xo = a0 * 0.5;
      for (let x = 0; x < outSize; x++) {
        t[x] = Math.min(inSize - 1, xo < 0 ? 0 : Math.trunc(xo));
        xo += a0;
      }
      return t;
    };
    const xs = table(w, outW);
    const ys = table(h, outH);
    const out = new Uint8Array(rw * rh * channels);
    for (let y = 0; y < rh; y++) {
      const yi = outH === h ? y + r.y0 : ys[y + r.y0];
      for (let x = 0; x < rw; x++) {
        const xi = outW === w ? x + r.x0 : xs[x + r.x0];
        for (let c = 0; c < channels; c++) out[(y * rw + x) * channels + c] = src[(yi * w + xi) * channels + c];
      }
    }
    return out;
  }
  // Input rows the vertical pass reads for the region's output rows.
  const cv = outH !== h ? pilCoeffs(h, outH, filter) : null;
  let rowA = r.y0;
  let rowB = r.y1;
  if (cv) {
    rowA = h;
    rowB = 0;
    for (let y = r.y0; y < r.y1; y++) {
      rowA = Math.min(rowA, cv.start[y]);
      rowB = Math.max(rowB, cv.start[y] + cv.size[y]);
    }
    if (rowB < rowA) rowB = rowA;
  }
  // Pillow resamples the horizontal axis first, then the vertical one.
  // Horizontal pass: columns [x0, x1) of input rows [rowA, rowB) → band [rowB − rowA, rw].
  const bandH = rowB - rowA;
  let band: Uint8Array;
  if (outW !== w) {
    const c = pilCoeffs(w, outW, filter);
    const k = fixedPoint(c);
    band = new Uint8Array(rw * bandH * channels);
    resamplePass(src, w * channels, channels, band, rw * channels, bandH, rw, rowA, r.x0, c, k, true);
  } else {
    band = new Uint8Array(rw * bandH * channels);
    for (let y = 0; y < bandH; y++) band.set(src.subarray(((rowA + y) * w + r.x0) * channels, ((rowA + y) * w + r.x1) * channels), y * rw * channels);
  }
  if (!cv) return band;
  // Vertical pass over the band: output rows [y0, y1).
  const k = fixedPoint(cv);
  const out = new Uint8Array(rw * rh * channels);
  resamplePass(band, rw * channels, channels, out, rw * channels, rh, rw, rowA, r.y0, cv, k, false);
  return out;
}

/**
 * One separable pass in Pillow's 22-bit fixed point. Horizontal: out[y][x] = Σ_i in[first + y][start_x + i]·k,
 * x over [offset, offset + n). Vertical: out[y][x] = Σ_i in[start_(offset+y) + i − first][x]·k.
 */
function resamplePass(
  src: Uint8Array,
  srcStride: number,
  channels: number,
  out: Uint8Array,
  outStride: number,
  rows: number,
  cols: number,
  first: number,
  offset: number,
  c: Coeffs,
  k: Int32Array,
  horizontal: boolean,
): void {
  const half = 1 << (PRECISION_BITS - 1);
  const ks = c.ksize;
  if (horizontal) {
    for (let y = 0; y < rows; y++) {
      const row = (first + y) * srcStride;
      const orow = y * outStride;
      for (let x = 0; x < cols; x++) {
        const xx = x + offset;
        const s = row + c.start[xx] * channels;
        const n = c.size[xx];
        const kb = xx * ks;
        if (channels === 3) {
          let a0 = half, a1 = half, a2 = half;
          for (let i = 0, p = s; i < n; i++, p += 3) {
            const kv = k[kb + i];
            a0 += src[p] * kv;
            a1 += src[p + 1] * kv;
            a2 += src[p + 2] * kv;
          }
          const o = orow + x * 3;
          out[o] = clip8(a0);
          out[o + 1] = clip8(a1);
          out[o + 2] = clip8(a2);
        } else {
          for (let ch = 0; ch < channels; ch++) {
            let acc = half;
            for (let i = 0; i < n; i++) acc += src[s + i * channels + ch] * k[kb + i];
            out[orow + x * channels + ch] = clip8(acc);
          }
        }
      }
    }
    return;
  }
  // Row by row (input rows are read contiguously); the sums are integers below 2^53, so the
  // order of accumulation does not change them.
  const width = cols * channels;
  const acc = new Float64Array(width);
  for (let y = 0; y < rows; y++) {
    const yy = y + offset;
    const s = (c.start[yy] - first) * srcStride;
    const n = c.size[yy];
    const kb = yy * ks;
    acc.fill(half);
    for (let i = 0; i < n; i++) {
      const kv = k[kb + i];
      const p = s + i * srcStride;
      for (let x = 0; x < width; x++) acc[x] += src[p + x] * kv;
    }
    const orow = y * outStride;
    for (let x = 0; x < width; x++) out[orow + x] = clip8(acc[x]);
  }
}

/** torch's bicubic (A = -0.75, align_corners=False, no antialias) as [out, in] weights. */
function torchBicubicMatrix(inSize: number, outSize: number): Float64Array {
  const A = -0.75;
  const m = new Float64Array(outSize * inSize);
  const scale = inSize / outSize;
  const cc1 = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1;
  const cc2 = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  for (let o = 0; o < outSize; o++) {
    const real = scale * (o + 0.5) - 0.5;
    const i0 = Math.floor(real);
    const t = real - i0;
    const w = [cc2(t + 1), cc1(t), cc1(1 - t), cc2(2 - t)];
    for (let j = 0; j < 4; j++) {
      const idx = Math.min(inSize - 1, Math.max(0, i0 - 1 + j));
      m[o * inSize + idx] += w[j];
    }
  }
  return m;
}

/** torch's antialiased bicubic (Pillow's a = -0.5 kernel, float coefficients) as [out, in]. */
function torchAaBicubicMatrix(inSize: number, outSize: number): Float64Array {
  const c = pilCoeffs(inSize, outSize, 'bicubic');
  const m = new Float64Array(outSize * inSize);
  for (let o = 0; o < outSize; o++) for (let i = 0; i < c.size[o]; i++) m[o * inSize + c.start[o] + i] = c.weights[o * c.ksize + i];
  return m;
}

/**
 * Resamples a [gh, gw, d] float grid (row-major, channels last) to [oh, ow, d]:
 * 'bicubic' = torch bicubic without antialias (HF), 'bicubic-aa' = with antialias (timm).
 */
export function resizeGridF64(src: ArrayLike<number>, gh: number, gw: number, d: number, oh: number, ow: number, mode: 'bicubic' | 'bicubic-aa'): Float64Array {
  const make = mode === 'bicubic' ? torchBicubicMatrix : torchAaBicubicMatrix;
  const mh = make(gh, oh);
  const mw = make(gw, ow);
  // rows first: tmp[oh, gw, d]
  const tmp = new Float64Array(oh * gw * d);
  for (let o = 0; o < oh; o++) {
    for (let i = 0; i < gh; i++) {
      const w = mh[o * gh + i];
      if (w === 0) continue;
      for (let x = 0; x < gw * d; x++) tmp[o * gw * d + x] += w * src[i * gw * d + x];
    }
  }
  const out = new Float64Array(oh * ow * d);
  for (let y = 0; y < oh; y++) {
    for (let o = 0; o < ow; o++) {
      for (let i = 0; i < gw; i++) {
        const w = mw[o * gw + i];
        if (w === 0) continue;
        const so = (y * gw + i) * d;
        const dO = (y * ow + o) * d;
        for (let c = 0; c < d; c++) out[dO + c] += w * tmp[so + c];
      }
    }
  }
  return out;
}
