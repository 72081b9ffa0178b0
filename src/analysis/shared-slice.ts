/**
 * Messages between `analyzeModel` and its workers (kept apart from model-modes.ts so that a
 * worker loads only what computing a head needs).
 */
import type { FloatArray } from '../checkpoint/types.js';
import type { HeadModes } from './types.js';

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
  d: number;
  dh: number;
  layer: number;
  head: number;
}

export type HeadReply = { id: number; ok: true; result: HeadModes } | { id: number; ok: false; error: string };

export function sliceView(s: SharedSlice): FloatArray {
  return s.f64 ? new Float64Array(s.buffer, s.offset * 8, s.length) : new Float32Array(s.buffer, s.offset * 4, s.length);
}

/** Copies a typed array into a new SharedArrayBuffer (one memcpy per layer tensor). */
export function toShared(a: FloatArray): SharedSlice {
  const f64 = a instanceof Float64Array;
  const buffer = new SharedArrayBuffer(a.length * (f64 ? 8 : 4));
  (f64 ? new Float64Array(buffer) : new Float32Array(buffer)).set(a);
  return { buffer, f64, offset: 0, length: a.length };
}

/** The ArrayBuffers of a result, for the transfer list. */
export function resultTransfer(r: HeadModes): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const a of [r.sigma, r.U, r.V, r.cosine, r.relGap, r.salience]) if (a) out.push(a.buffer as ArrayBuffer);
  return out;
}
