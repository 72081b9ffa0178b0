/**
 * Bounded top-k lists for every (layer, head, mode, sign) of a scan (docs/method.md §5): memory is
 * heaps × k entries whatever the number of images. Entries are ordered by score, descending;
 * equal scores by image id, ascending (the lower id wins), a strict total order, so a list
 * holds exactly the k best images of everything offered to it, in any order of offering.
 *
 * Each list serialises to a blob of ENTRY_BYTES-byte little-endian records (the run database's
 * `heap_state.entries`): f64 score, i32 image id, f32 qmax, f32 kmax, i32 q_token, i32 k_token,
 * f32 q_mean, f32 k_mean, f32 q_top5, f32 k_top5.
 */

export const ENTRY_BYTES = 44;

export interface TopEntry {
  score: number;
  id: number;
  qmax: number;
  kmax: number;
  qToken: number;
  kToken: number;
  qMean: number;
  kMean: number;
  qTop5: number;
  kTop5: number;
}

/** a before b in the ranking: higher score, then lower image id. */
export function ranksBefore(sa: number, ia: number, sb: number, ib: number): boolean {
  return sa > sb || (sa === sb && ia < ib);
}

export class TopKLists {
  readonly score: Float64Array;
  readonly id: Int32Array;
  readonly f32: Float32Array; // per entry: qmax, kmax, qMean, kMean, qTop5, kTop5
  readonly tok: Int32Array; // per entry: qToken, kToken
  readonly count: Int32Array;
  /** Changed since the last `takeDirty(0)` / `takeDirty(1)` (two independent consumers). */
  private readonly dirty: [Uint8Array, Uint8Array];

  constructor(
    readonly lists: number,
    readonly k: number,
  ) {
    if (!Number.isInteger(k) || k < 1) throw new Error(`top-k: k must be a positive integer, got ${k}`);
    this.score = new Float64Array(lists * k);
    this.id = new Int32Array(lists * k);
    this.f32 = new Float32Array(lists * k * 6);
    this.tok = new Int32Array(lists * k * 2);
    this.count = new Int32Array(lists);
    this.dirty = [new Uint8Array(lists), new Uint8Array(lists)];
  }

  /** Whether an image with this score and id would enter list `h` (cheap pre-check for `offer`). */
  wouldEnter(h: number, score: number, id: number): boolean {
    if (Number.isNaN(score)) return false;
    if (this.count[h] < this.k) return true;
    const last = h * this.k + this.k - 1;
    return ranksBefore(score, id, this.score[last], this.id[last]);
  }

  /** Offers one image to list `h`; returns whether it entered. NaN scores never enter. */
  offer(h: number, score: number, id: number, qmax: number, kmax: number, qToken: number, kToken: number, qMean: number, kMean: number, qTop5: number, kTop5: number): boolean {
    if (Number.isNaN(score)) return false;
    const k = this.k;
    const base = h * k;
    let n = this.count[h];
    if (n === k) {
      const last = base + k - 1;
      if (!ranksBefore(score, id, this.score[last], this.id[last])) return false;
      n = k - 1; // the last entry drops out
    }
    // Shift worse entries down by one.
    let pos = n;
    while (pos > 0 && ranksBefore(score, id, this.score[base + pos - 1], this.id[base + pos - 1])) {
      const from = base + pos - 1;
      const to = from + 1;
      this.score[to] = this.score[from];
      this.id[to] = this.id[from];
      this.f32.copyWithin(to * 6, from * 6, from * 6 + 6);
      this.tok[to * 2] = this.tok[from * 2];
      this.tok[to * 2 + 1] = this.tok[from * 2 + 1];
      pos--;
    }
    const at = base + pos;
    this.score[at] = score;
    this.id[at] = id;
    const f = at * 6;
    this.f32[f] = qmax;
    this.f32[f + 1] = kmax;
    this.f32[f + 2] = qMean;
    this.f32[f + 3] = kMean;
    this.f32[f + 4] = qTop5;
    this.f32[f + 5] = kTop5;
    this.tok[at * 2] = qToken;
    this.tok[at * 2 + 1] = kToken;
    this.count[h] = Math.min(this.count[h] + 1, k);
    this.dirty[0][h] = 1;
    this.dirty[1][h] = 1;
    return true;
  }

  offerEntry(h: number, e: TopEntry): boolean {
    return this.offer(h, e.score, e.id, e.qmax, e.kmax, e.qToken, e.kToken, e.qMean, e.kMean, e.qTop5, e.kTop5);
  }

  entry(h: number, rank: number): TopEntry {
    const at = h * this.k + rank;
    const f = at * 6;
    return {
      score: this.score[at],
      id: this.id[at],
      qmax: this.f32[f],
      kmax: this.f32[f + 1],
      qMean: this.f32[f + 2],
      kMean: this.f32[f + 3],
      qTop5: this.f32[f + 4],
      kTop5: this.f32[f + 5],
      qToken: this.tok[at * 2],
      kToken: this.tok[at * 2 + 1],
    };
  }

  entries(h: number): TopEntry[] {
    return Array.from({ length: this.count[h] }, (_, r) => this.entry(h, r));
  }

  /** Lists changed since this consumer last asked (and clears its marks). */
  takeDirty(consumer: 0 | 1): number[] {
    const d = this.dirty[consumer];
    const out: number[] = [];
    for (let h = 0; h < d.length; h++) if (d[h]) out.push(h);
    d.fill(0);
    return out;
  }

  markAllDirty(consumer: 0 | 1): void {
    this.dirty[consumer].fill(1);
  }

  /** List `h` as a heap_state blob (see the module comment), straight from the arrays. */
  encode(h: number): Buffer {
    const n = this.count[h];
    const b = Buffer.allocUnsafe(n * ENTRY_BYTES);
    for (let r = 0; r < n; r++) {
      const at = h * this.k + r;
      const o = r * ENTRY_BYTES;
      const f = at * 6;
      b.writeDoubleLE(this.score[at], o);
      b.writeInt32LE(this.id[at], o + 8);
      b.writeFloatLE(this.f32[f], o + 12);
      b.writeFloatLE(this.f32[f + 1], o + 16);
      b.writeInt32LE(this.tok[at * 2], o + 20);
      b.writeInt32LE(this.tok[at * 2 + 1], o + 24);
      b.writeFloatLE(this.f32[f + 2], o + 28);
      b.writeFloatLE(this.f32[f + 3], o + 32);
      b.writeFloatLE(this.f32[f + 4], o + 36);
      b.writeFloatLE(this.f32[f + 5], o + 40);
    }
    return b;
  }

  /** Replaces list `h` with decoded entries (resume); does not mark it dirty. */
  load(h: number, blob: Uint8Array): void {
    const es = decodeEntries(blob);
    if (es.length > this.k) throw new Error(`top-k state holds ${es.length} entries, more than k = ${this.k}`);
    this.count[h] = 0;
    for (const e of es) {
      this.offerEntry(h, e);
    }
    this.dirty[0][h] = 0;
    this.dirty[1][h] = 0;
  }
}

export function encodeEntries(es: TopEntry[]): Buffer {
  const b = Buffer.alloc(es.length * ENTRY_BYTES);
  es.forEach((e, i) => {
    const o = i * ENTRY_BYTES;
    b.writeDoubleLE(e.score, o);
    b.writeInt32LE(e.id, o + 8);
    b.writeFloatLE(e.qmax, o + 12);
    b.writeFloatLE(e.kmax, o + 16);
    b.writeInt32LE(e.qToken, o + 20);
    b.writeInt32LE(e.kToken, o + 24);
    b.writeFloatLE(e.qMean, o + 28);
    b.writeFloatLE(e.kMean, o + 32);
    b.writeFloatLE(e.qTop5, o + 36);
    b.writeFloatLE(e.kTop5, o + 40);
  });
  return b;
}

export function decodeEntries(blob: Uint8Array): TopEntry[] {
  if (blob.length % ENTRY_BYTES !== 0) throw new Error(`top-k state blob of ${blob.length} bytes is not a multiple of ${ENTRY_BYTES}`);
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.length);
  const out: TopEntry[] = [];
  for (let o = 0; o < b.length; o += ENTRY_BYTES) {
    out.push({
      score: b.readDoubleLE(o),
      id: b.readInt32LE(o + 8),
      qmax: b.readFloatLE(o + 12),
      kmax: b.readFloatLE(o + 16),
      qToken: b.readInt32LE(o + 20),
      kToken: b.readInt32LE(o + 24),
      qMean: b.readFloatLE(o + 28),
      kMean: b.readFloatLE(o + 32),
      qTop5: b.readFloatLE(o + 36),
      kTop5: b.readFloatLE(o + 40),
    });
  }
  return out;
}
