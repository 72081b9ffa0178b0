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
  close(): Promise<void>;
}
