/** Storage dtypes we decode. Everything is handed out as float32 (or float64 for F64). */
export type DType = 'F64' | 'F32' | 'F16' | 'BF16';

export type FloatArray = Float32Array | Float64Array;

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
}

/**
 * A lazily read set of named tensors (one safetensors file, a sharded index, a torch pickle,
 * or an in-memory map for tests). Reads are positioned: only the bytes asked for are read.
 */
export interface TensorSource {
  /** Human-readable location used in error messages (a file or directory path). */
  readonly location: string;
  names(): string[];
  info(name: string): TensorInfo | undefined;
  /**
   * Reads rows [rowStart, rowEnd) of the leading dimension (the whole tensor by default),
   * decoded to float32 (float64 for F64 storage). Rows of a row-major tensor are contiguous,
   * so a fused qkv weight's q and k blocks are read without touching v.
   */
  read(name: string, rowStart?: number, rowEnd?: number): Promise<FloatArray>;
  /**
   * Optional: `read` of a float32 tensor into the caller's `into` (reused from call to call:
   * fresh memory costs more than the read), returning the filled front of it; null when the
   * tensor is not stored as float32 or does not fit (the caller then uses `read`).
   */
  readInto?(name: string, rowStart: number, rowEnd: number, into: Float32Array): Promise<Float32Array | null>;
  close(): Promise<void>;
  /**
   * Let NaN/Inf through `loadWeight` (arch/spec.ts), which otherwise refuses a tensor holding
   * them. Set by `loadSpec` for --allow-nonfinite; absent (refuse) everywhere else.
   */
  allowNonFinite?: boolean;
}
