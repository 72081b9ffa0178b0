/**
 * Messages between `analyzeModel` and its workers (kept apart from model-modes.ts so that a
 * worker loads only what computing a head needs).
 */
import type { FloatArray } from '../checkpoint/types.js';
import type { HeadModes } from './types.js';
import type { VectorsOut } from './modes.js';

/** A typed-array view that can cross threads: a shared buffer plus its element range. */
export interface SharedSlice {
  buffer: SharedArrayBuffer;
  f64: boolean;
  offset: number;
  length: number;
}

/** Message to a worker: one head (views into the layer's shared weights). */
export interface HeadJob {
  id: number;
  wq: SharedSlice;
  wk: SharedSlice;
  bq: SharedSlice | null;
  /** Where the vectors go: the head's d×d_h blocks of shared U, V arrays; false: not kept; absent: in the reply. */
  vectors?: { U: SharedSlice; V: SharedSlice } | false;
  d: number;
  dh: number;
  layer: number;
  head: number;
}

export type HeadReply = { id: number; ok: true; result: HeadModes } | { id: number; ok: false; error: string };

export function sliceView(s: SharedSlice): FloatArray {
  return s.f64 ? new Float64Array(s.buffer, s.offset * 8, s.length) : new Float32Array(s.buffer, s.offset * 4, s.length);
}

/**
 * Shared buffers reused in turn (`slots` of them, grown when needed): a caller that never has
 * more than `slots` in use at once reads each layer's weights straight into shared memory
 * without allocating (`take`, then `adopt`): fresh pages cost more than the read itself.
 */
export class SharedRing {
  private bufs: (SharedArrayBuffer | null)[];
  private next = 0;

  constructor(slots = 2) {
    this.bufs = Array<SharedArrayBuffer | null>(slots).fill(null);
  }

  /** The next slot as `length` float32s, to read into (then `adopt` what was read). */
  take(length: number): Float32Array {
    const i = this.next;
    this.next = (i + 1) % this.bufs.length;
    let buffer = this.bufs[i];
    if (!buffer || buffer.byteLength < 4 * length) buffer = this.bufs[i] = new SharedArrayBuffer(4 * length);
    return new Float32Array(buffer, 0, length);
  }

  /**
   * `a` as a shared slice: itself when it is the view `take` gave (read in place), else a copy
   * into the slot just taken (a source that cannot read in place, or float64 storage).
   */
  adopt(a: FloatArray, taken: Float32Array): SharedSlice {
    if (a.buffer === taken.buffer && a.byteOffset === taken.byteOffset && a instanceof Float32Array) return { buffer: taken.buffer as SharedArrayBuffer, f64: false, offset: 0, length: a.length };
    const f64 = a instanceof Float64Array;
    const bytes = a.length * (f64 ? 8 : 4);
    const i = (this.next + this.bufs.length - 1) % this.bufs.length;
    let buffer = this.bufs[i]!;
    if (buffer.byteLength < bytes) buffer = this.bufs[i] = new SharedArrayBuffer(bytes);
    (f64 ? new Float64Array(buffer, 0, a.length) : new Float32Array(buffer, 0, a.length)).set(a);
    return { buffer, f64, offset: 0, length: a.length };
  }
}

/** The ArrayBuffers of a result, for the transfer list. */
export function resultTransfer(r: HeadModes): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const a of [r.sigma, r.U, r.V, r.cosine, r.relGap, r.salience]) if (a && a.buffer instanceof ArrayBuffer) out.push(a.buffer);
  return out;
}

/** A typed array on a SharedArrayBuffer as a slice that can cross threads (null if not shared). */
export function asShared(a: Float32Array | Float64Array, offset: number, length: number): SharedSlice | null {
  if (!(a.buffer instanceof SharedArrayBuffer)) return null;
  const size = a instanceof Float64Array ? 8 : 4;
  return { buffer: a.buffer, f64: size === 8, offset: a.byteOffset / size + offset, length };
}

/** `headModes` options that send the vectors where the job says. */
export function jobVectors(job: HeadJob): VectorsOut | false | undefined {
  if (job.vectors === undefined || job.vectors === false) return job.vectors;
  return { U: sliceView(job.vectors.U), V: sliceView(job.vectors.V), offset: 0 };
}
