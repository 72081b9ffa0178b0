import { UserError } from '../errors.js';
import type { FloatArray, TensorInfo, TensorSource } from './types.js';

/** An in-memory TensorSource (tests, and specs built from edited weights). */
export class MemorySource implements TensorSource {
  private map = new Map<string, { shape: number[]; data: FloatArray }>();
  allowNonFinite?: boolean;
  constructor(readonly location = '<memory>', tensors: Record<string, { shape: number[]; data: ArrayLike<number> }> = {}) {
    for (const [k, v] of Object.entries(tensors)) this.set(k, v.shape, v.data);
  }
  set(name: string, shape: number[], data: ArrayLike<number>): void {
    const arr = data instanceof Float64Array ? data : Float32Array.from(data);
    this.map.set(name, { shape, data: arr });
  }
  names(): string[] {
    return [...this.map.keys()];
  }
  info(name: string): TensorInfo | undefined {
    const t = this.map.get(name);
    return t && { name, dtype: t.data instanceof Float64Array ? 'F64' : 'F32', shape: t.shape };
  }
  async read(name: string, rowStart?: number, rowEnd?: number): Promise<FloatArray> {
    const t = this.map.get(name);
    if (!t) throw new UserError(`${this.location}: tensor ${name} is missing`);
    const rows = t.shape.length ? t.shape[0] : 1;
    const rowLen = rows ? t.data.length / rows : 0;
    return t.data.slice((rowStart ?? 0) * rowLen, (rowEnd ?? rows) * rowLen);
  }
  async close(): Promise<void> {}
}
