/** An in-memory ImageSource of already-normalised pixels; ids in `bad` fail like corrupt files. */
import { ImageDecodeError } from '../../src/images/decode.js';
import type { ImageSource, LoadedImage } from '../../src/images/source.js';

export class MemoryPixels implements ImageSource {
  readonly channels = 3;
  constructor(
    readonly data: Float32Array,
    readonly count: number,
    readonly imageSize: [number, number],
    readonly bad: ReadonlySet<number> = new Set(),
  ) {}
  label(i: number): string {
    return `memory[${i}]`;
  }
  async load(i: number, out: Float32Array, offset: number): Promise<LoadedImage> {
    if (this.bad.has(i)) throw new ImageDecodeError('corrupt image (planted)');
    const per = 3 * this.imageSize[0] * this.imageSize[1];
    out.set(this.data.subarray(i * per, (i + 1) * per), offset);
    return { width: null, height: null, bytes: null, sha256: null, name: null };
  }
  describe(): Record<string, unknown> {
    return { source: 'memory', count: this.count };
  }
  close(): void {}
}
