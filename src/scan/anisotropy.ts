/**
 * The anisotropy baseline of METHOD.md §3: per layer, the mean cosine between the centre-patch
 * embeddings of different images, mean_{i≠j} ê_i·ê_j = (|Σ ê_i|² − n) / (n (n − 1)) with ê the
 * unit vectors. Only Σ ê_i and n are kept, as exact integers (each component rounded to a
 * multiple of 2⁻³²), so the sum is the same in any order: resumed and merged scans give
 * bit-identical values to a single scan.
 */

export const FIXED_SCALE = 2 ** 32;

export class CentreSums {
  readonly sums: BigInt64Array;
  readonly n: Float64Array;
  private batch: Float64Array;
  private batchN: Float64Array;
  private pending = 0;

  constructor(
    readonly layers: number,
    readonly d: number,
  ) {
    this.sums = new BigInt64Array(layers * d);
    this.n = new Float64Array(layers);
    this.batch = new Float64Array(layers * d);
    this.batchN = new Float64Array(layers);
  }

  /** Adds one image's centre-patch vector of layer slot `li` (zero vectors are not counted). */
  add(li: number, v: ArrayLike<number>, offset = 0): void {
    const d = this.d;
    let s = 0;
    for (let i = 0; i < d; i++) s += v[offset + i] * v[offset + i];
    const norm = Math.sqrt(s);
    if (!(norm > 0) || !Number.isFinite(norm)) return;
    const b = li * d;
    for (let i = 0; i < d; i++) this.batch[b + i] += Math.round((v[offset + i] / norm) * FIXED_SCALE);
    this.batchN[li]++;
    // Keep the float64 batch sums exact (< 2^53).
    if (++this.pending >= 1 << 19) this.flush();
  }

  /** Moves the batch sums into the exact totals. */
  flush(): void {
    for (let i = 0; i < this.batch.length; i++) {
      if (this.batch[i] !== 0) this.sums[i] += BigInt(this.batch[i]);
    }
    for (let l = 0; l < this.layers; l++) this.n[l] += this.batchN[l];
    this.batch.fill(0);
    this.batchN.fill(0);
    this.pending = 0;
  }

  /** The mean pairwise cosine of layer slot `li` (null with fewer than two images). */
  value(li: number): number | null {
    return anisotropyFrom(this.sums.subarray(li * this.d, (li + 1) * this.d), this.n[li]);
  }

  blob(li: number): Buffer {
    const a = this.sums.slice(li * this.d, (li + 1) * this.d);
    return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  }

  load(li: number, n: number, blob: Uint8Array): void {
    if (blob.length !== this.d * 8) throw new Error(`anisotropy sums: ${blob.length} bytes, expected ${this.d * 8}`);
    const a = new BigInt64Array(blob.buffer.slice(blob.byteOffset, blob.byteOffset + blob.length));
    this.sums.set(a, li * this.d);
    this.n[li] = n;
  }
}

export function anisotropyFrom(sums: BigInt64Array, n: number): number | null {
  if (n < 2) return null;
  let s2 = 0;
  for (let i = 0; i < sums.length; i++) {
    const x = Number(sums[i]) / FIXED_SCALE;
    s2 += x * x;
  }
  return (s2 - n) / (n * (n - 1));
}
