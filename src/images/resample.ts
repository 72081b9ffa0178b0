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

/**
 * Pillow-exact resize of an interleaved 8-bit image (`channels` per pixel) to outW x outH.
 */
export function pilResizeU8(src: Uint8Array, w: number, h: number, channels: number, outW: number, outH: number, filter: PilFilter): Uint8Array {
  if (outW === w && outH === h) return src.slice();
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
    const out = new Uint8Array(outW * outH * channels);
    for (let y = 0; y < outH; y++) {
      const yi = ys[y];
      for (let x = 0; x < outW; x++) {
        const xi = xs[x];
        for (let c = 0; c < channels; c++) out[(y * outW + x) * channels + c] = src[(yi * w + xi) * channels + c];
      }
    }
    return out;
  }
  let cur = src;
  let curW = w;
  const half = 1 << (PRECISION_BITS - 1);
  // Pillow resamples the horizontal axis first, then the vertical one.
  if (outW !== w) {
    const c = pilCoeffs(w, outW, filter);
    const k = fixedPoint(c);
    const out = new Uint8Array(outW * h * channels);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < outW; x++) {
        const s = c.start[x];
        const n = c.size[x];
        for (let ch = 0; ch < channels; ch++) {
          let acc = half;
          for (let i = 0; i < n; i++) acc += cur[(y * curW + s + i) * channels + ch] * k[x * c.ksize + i];
          out[(y * outW + x) * channels + ch] = clip8(acc);
        }
      }
    }
    cur = out;
    curW = outW;
  }
  if (outH !== h) {
    const c = pilCoeffs(h, outH, filter);
    const k = fixedPoint(c);
    const out = new Uint8Array(curW * outH * channels);
    for (let y = 0; y < outH; y++) {
      const s = c.start[y];
      const n = c.size[y];
      for (let x = 0; x < curW; x++) {
        for (let ch = 0; ch < channels; ch++) {
          let acc = half;
          for (let i = 0; i < n; i++) acc += cur[((s + i) * curW + x) * channels + ch] * k[y * c.ksize + i];
          out[(y * curW + x) * channels + ch] = clip8(acc);
        }
      }
    }
    cur = out;
  }
  return cur;
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
