/**
 * IEEE 754 half precision (binary16) without Float16Array (Node 20): the static site stores its
 * query/key maps this way (3 significant digits, a quarter of float64). Round to nearest, ties to
 * even, as numpy's astype(float16); overflow to ±Infinity, subnormals kept. Browser-safe (no
 * Node imports): the site's data source decodes with the same code.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The binary16 bits of `x` (via its float32 value). */
export function toHalfBits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf, NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // Subnormal half (or zero): shift the implicit 1 in, round to nearest even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && (half & 1)) ? 1 : 0));
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half++; // may carry into the exponent (up to Inf): correct
  return sign | half;
}

/** The number a binary16 bit pattern holds. */
export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Little-endian binary16 bytes of `values`. */
export function encodeHalf(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  for (let i = 0; i < values.length; i++) {
    const h = toHalfBits(values[i]);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}

/** Values of little-endian binary16 bytes. */
export function decodeHalf(bytes: Uint8Array): Float64Array {
  const out = new Float64Array(bytes.length >>> 1);
  for (let i = 0; i < out.length; i++) out[i] = fromHalfBits(bytes[2 * i] | (bytes[2 * i + 1] << 8));
  return out;
}
