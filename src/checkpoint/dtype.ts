import type { DType, FloatArray } from './types.js';

export const DTYPE_BYTES: Record<DType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2 };

/** IEEE half to float, bit-exact (subnormals, inf, nan). */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

const HALF_TABLE = (() => {
  const t = new Float32Array(65536);
  for (let i = 0; i < 65536; i++) t[i] = halfToFloat(i);
  return t;
})();

/** Decodes little-endian raw tensor bytes to float32 (float64 for F64). */
export function decode(bytes: Uint8Array, dtype: DType): FloatArray {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  // Copy to an aligned buffer first: a positioned read may land at any offset.
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  // A buffer that is exactly its own ArrayBuffer (a large read) is wrapped, not copied: the
  // copy of a big tensor costs fresh pages, more than reading it.
  const whole = aligned.byteOffset === 0 && aligned.buffer.byteLength === aligned.byteLength;
  switch (dtype) {
    case 'F32':
      return whole ? new Float32Array(aligned.buffer, 0, n) : new Float32Array(aligned.buffer.slice(aligned.byteOffset, aligned.byteOffset + n * 4));
    case 'F64':
      return whole ? new Float64Array(aligned.buffer, 0, n) : new Float64Array(aligned.buffer.slice(aligned.byteOffset, aligned.byteOffset + n * 8));
    case 'F16': {
      const src = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = HALF_TABLE[src[i]];
      return out;
    }
    case 'BF16': {
      const src = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
      const out = new Float32Array(n);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = src[i] << 16;
      return out;
    }
  }
}

/** Encodes float values to raw little-endian bytes of the given dtype (for fixtures). */
export function encode(values: ArrayLike<number>, dtype: DType): Uint8Array {
  const n = values.length;
  switch (dtype) {
    case 'F32':
      return new Uint8Array(Float32Array.from(values).buffer);
    case 'F64':
      return new Uint8Array(Float64Array.from(values).buffer);
    case 'BF16': {
      const f = Float32Array.from(values);
      const u = new Uint32Array(f.buffer);
      const out = new Uint16Array(n);
      // Round to nearest even, as torch does.
      for (let i = 0; i < n; i++) out[i] = (u[i] + 0x7fff + ((u[i] >> 16) & 1)) >>> 16;
      return new Uint8Array(out.buffer);
    }
    case 'F16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = floatToHalf(values[i]);
      return new Uint8Array(out.buffer);
    }
  }
}

// One scratch word reused by every call (allocating per value made F16 encoding very slow).
const SCRATCH_F = new Float32Array(1);
const SCRATCH_U = new Uint32Array(SCRATCH_F.buffer);

function floatToHalf(v: number): number {
  SCRATCH_F[0] = v;
  const x = SCRATCH_U[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}
