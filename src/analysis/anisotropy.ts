/**
 * Anisotropy control (METHOD.md §3, paper supplementary): per layer, the mean cosine between
 * the centre-patch embeddings of *different* images, and the relative cosine curves
 * (head / layer σ-weighted cosine minus that baseline).
 *
 * The accumulation (`CentreSums`, below) is shared by `scan`, `anisotropy` and the explorer:
 * exact fixed-point sums of unit vectors, mean_{i≠j} ê_i·ê_j = (|Σ ê_i|² − n) / (n (n − 1)), so
 * all of them give the same value for the same images.
 */

/** Mean pairwise cosine over distinct pairs, computed directly (O(n² d); tests and small n). */
export function meanPairwiseCosine(vectors: ReadonlyArray<ArrayLike<number>>): number | null {
  const unit = vectors
    .map((v) => {
      let s = 0;
      for (let i = 0; i < v.length; i++) s += v[i] * v[i];
      const n = Math.sqrt(s);
      return n > 0 ? Array.from(v, (x) => x / n) : null;
    })
    .filter((v): v is number[] => v !== null);
  const n = unit.length;
  if (n < 2) return null;
  let sum = 0;
  for (let a = 0; a < n; a++)
    for (let b = a + 1; b < n; b++) {
      let c = 0;
      for (let i = 0; i < unit[a].length; i++) c += unit[a][i] * unit[b][i];
      sum += c;
    }
  return sum / ((n * (n - 1)) / 2);
}

export interface LayerCosines {
  layer: number;
  mean_weighted_cosine: number;
  mean_plain_cosine?: number;
  heads: { weighted_cosine: number }[];
}

export interface AnisotropyLayer {
  layer: number;
  /** l / (L − 1). */
  depth: number;
  anisotropy: number | null;
  images: number;
  mean_weighted_cosine: number;
  relative_mean_weighted_cosine: number | null;
  relative_weighted_cosine: (number | null)[];
}

/** Joins a per-layer baseline with the weight-only cosines: relative = cosine − anisotropy. */
export function relativeCurves(cosines: ReadonlyArray<LayerCosines>, baseline: ReadonlyMap<number, { value: number | null; n: number }>, totalLayers: number): AnisotropyLayer[] {
  return cosines
    .filter((c) => baseline.has(c.layer))
    .map((c) => {
      const b = baseline.get(c.layer)!;
      const v = b.value;
      return {
        layer: c.layer,
        depth: totalLayers > 1 ? c.layer / (totalLayers - 1) : 0,
        anisotropy: v,
        images: b.n,
        mean_weighted_cosine: c.mean_weighted_cosine,
        relative_mean_weighted_cosine: v === null ? null : c.mean_weighted_cosine - v,
        relative_weighted_cosine: c.heads.map((h) => (v === null ? null : h.weighted_cosine - v)),
      };
    });
}

/**
 * CentreSums: the anisotropy baseline of METHOD.md §3: per layer, the mean cosine between the centre-patch
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
