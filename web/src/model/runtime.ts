/**
 * The model in the page: the ONNX graph of `qkscope export-onnx` (the graph every Node forward
 * pass runs) on onnxruntime-web, WebGPU where the browser offers it, else WebAssembly (one
 * thread unless the page is cross-origin isolated). The .onnx and the .wasm come as base64
 * script chunks (scripts.ts), so nothing is fetched: it works from file://.
 */
import * as ort from 'onnxruntime-web';
import type { OnnxModelCard } from '../../../src/site-types.js';
import { chunkedBytes } from './scripts.js';

/** Every tapped block of one image. */
export interface PageForward {
  /** Per block: [T, d] LayerNorm output feeding the attention. */
  ln: Float32Array[];
  /** Per block: [H, T, T] attention probabilities. */
  attention: Float32Array[];
  /** Per block: [H, T, T] pre-softmax logits (the graph's Softmax input). */
  scores: Float32Array[];
  /** Per block: [H, T, T] q·kᵀ/√d_h alone (models with a relative position bias), else null. */
  qk: Float32Array[] | null;
  /** Which back-end ran it. */
  backend: string;
}

let wasmReady: Promise<void> | null = null;

/** Loads onnxruntime-web's WebAssembly binary from the site (once per page). */
function prepareWasm(chunks: number, status: (s: string) => void): Promise<void> {
  if (!wasmReady) {
    wasmReady = (async () => {
      status('loading the WebAssembly runtime…');
      const bin = await chunkedBytes('ort/wasm', chunks, (i, n) => status(`loading the WebAssembly runtime (${i}/${n})…`));
      ort.env.wasm.wasmBinary = bin;
      // Threads need SharedArrayBuffer, which only cross-origin-isolated pages have (not file://, not most static hosts).
      ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
      ort.env.wasm.proxy = false;
      ort.env.logLevel = 'error';
    })();
    wasmReady.catch(() => (wasmReady = null));
  }
  return wasmReady;
}

export class PageModel {
  private session: Promise<{ s: ort.InferenceSession; backend: string }> | null = null;

  constructor(
    readonly slug: string,
    readonly card: OnnxModelCard,
    private readonly chunks: number,
    private readonly wasmChunks: number,
  ) {}

  /** Starts loading the runtime and the model (the Image view opens: the first image then waits less). */
  warm(status: (s: string) => void = () => undefined): void {
    this.open(status).catch(() => undefined);
  }

  private open(status: (s: string) => void): Promise<{ s: ort.InferenceSession; backend: string }> {
    if (!this.session) {
      this.session = (async () => {
        await prepareWasm(this.wasmChunks, status);
        const bytes = await chunkedBytes(`model/${this.slug}/onnx`, this.chunks, (i, n) => status(`loading the model (${i}/${n})…`));
        status('starting the model…');
        const gpu = 'gpu' in navigator && !!(await (navigator as unknown as { gpu: { requestAdapter(): Promise<unknown> } }).gpu.requestAdapter().catch(() => null));
        if (gpu) {
          try {
            return { s: await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'], graphOptimizationLevel: 'all' }), backend: 'WebGPU' };
          } catch {
            // Unsupported operator or adapter trouble: the CPU back-end runs every operator.
          }
        }
        return { s: await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' }), backend: 'WebAssembly' };
      })();
      this.session.catch(() => (this.session = null));
    }
    return this.session;
  }

  /** One image: pixels [C, H, W] float32, preprocessed. */
  async forward(pixels: Float32Array, status: (s: string) => void = () => undefined): Promise<PageForward> {
    const { s, backend } = await this.open(status);
    status(`running the model (${backend})…`);
    const [C, H, W] = this.card.inputs[0].dims.slice(1) as number[];
    const out = await s.run({ pixels: new ort.Tensor('float32', pixels, [1, C, H, W]) });
    const L = this.card.dims.layers;
    const take = (prefix: string): Float32Array[] =>
      Array.from({ length: L }, (_, l) => {
        const t = out[`${prefix}.${l}`];
        return t ? (t.data as Float32Array) : new Float32Array(0);
      });
    return { ln: take('ln'), attention: take('attention'), scores: take('scores'), qk: this.card.has_rel_pos ? take('qk') : null, backend };
  }
}
