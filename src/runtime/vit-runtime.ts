/**
 * The library entry point for running a ViT: build the graph from a VitSpec, open an
 * onnxruntime-node session, run batches of pixels, get typed arrays back.
 *
 *   const rt = await VitRuntime.create(spec, { outputs: { ln: 'all', attention: [0, 11], logits: true } });
 *   const r = await rt.run(pixels, n);   // r.ln: [n, L, T, d], r.attention: [n, 2, H, T, T] ...
 *   await rt.close();
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import type { VitSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { executionProviders, type Device } from './device.js';
import { buildVitGraph, type ParamBinding, type VitGraphOptions, type VitOutputs, type VitTensors } from './vit-graph.js';
import type { TokenLayout } from '../arch/tokens.js';

export interface VitRuntimeOptions extends VitGraphOptions {
  outputs: VitOutputs;
  /** 'cpu' (default) or 'cuda' (needs onnxruntime-node's CUDA provider; see device.ts). */
  device?: Device;
  /** CPU threads for one operator (onnxruntime intraOpNumThreads); default: onnxruntime's choice. */
  threads?: number;
  /**
   * Serialise weights to an external-data file in a temp folder instead of one protobuf
   * buffer. Default: only when the weights exceed protobuf's limit (about 1.8 GB).
   */
  externalData?: boolean;
}

export interface RunResult {
  n: number;
  /** [n, ln layers, T, d] */
  ln?: Float32Array;
  /** [n, residual layers, T, d] */
  residual?: Float32Array;
  /** [n, attention layers, H, T, T] */
  attention?: Float32Array;
  /** [n, classes] */
  logits?: Float32Array;
  /** [n, d'] */
  features?: Float32Array;
  /** [n, T, d] */
  final?: Float32Array;
  /** Outputs appended by `extend`, with their dims. */
  extra: Record<string, { data: Float32Array; dims: number[] }>;
}

export interface RunOptions {
  /** Per-run weights for keys built `overridable`, canonical layout ([out, in] for linears). */
  weights?: Record<string, Float32Array>;
}

const EXTERNAL_THRESHOLD = 1.8e9;

export class VitRuntime {
  private constructor(
    readonly spec: VitSpec,
    private readonly defaults: Map<string, { data: Float32Array; dims: number[] }>,
    private session: InferenceSession | null,
    readonly layout: TokenLayout,
    /** Block indices behind each layered output. */
    readonly layers: { ln: number[]; residual: number[]; attention: number[] },
    /** Output name -> dims ('batch' for N). */
    readonly outputDims: Map<string, (number | string)[]>,
    private readonly params: Map<string, ParamBinding>,
    readonly extraOutputs: string[],
    /** Forward-pass FLOPs per image (2 x multiply-adds). */
    readonly flopsPerImage: number,
    readonly tensors: VitTensors,
    readonly device: Device,
    /** What `run` takes per image: pixels [C, H, W], or (with `startLayer`) the residual [T, d] entering that block. */
    readonly input: { name: 'pixels' | 'residual'; dims: number[] } = { name: 'pixels', dims: [spec.channels, ...layout.imageSize] },
  ) {}

  static async create(spec: VitSpec, opts: VitRuntimeOptions): Promise<VitRuntime> {
    const device = opts.device ?? 'cpu';
    const providers = executionProviders(device);
    if (opts.threads !== undefined && (!Number.isInteger(opts.threads) || opts.threads < 1)) {
      throw new UserError(`--threads ${opts.threads}: give a positive whole number`);
    }
    const built = await buildVitGraph(spec, opts);
    const sessionOptions: InferenceSession.SessionOptions = {
      executionProviders: providers,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      interOpNumThreads: 1,
      // Memory patterns (onnxruntime's default) plan each input shape on its first run and
      // allocate the planned block on the next: a second run of fresh memory (~55 k page
      // faults, ~0.9 s for the scan's ViT-B graph at batch 8). Without them the arena's
      // chunks are reused from the second run on, at the same steady-state speed.
      enableMemPattern: false,
      ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
      logSeverityLevel: 3,
    };
    const useExternal = opts.externalData ?? built.graph.weightBytes() > EXTERNAL_THRESHOLD;
    let session: InferenceSession;
    try {
      if (useExternal) {
        const dir = mkdtempSync(join(tmpdir(), 'qkscope-onnx-'));
        try {
          const path = await built.graph.writeExternal(dir);
          session = await ort.InferenceSession.create(path, sessionOptions);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      } else {
        session = await ort.InferenceSession.create(await built.graph.encode({ release: true }), sessionOptions);
      }
    } catch (e) {
      if (device === 'cuda') {
        throw new UserError(`--device cuda: onnxruntime could not start the CUDA provider (${(e as Error).message.split('\n')[0]}); check the CUDA 12 / cuDNN 9 libraries or use --device cpu`);
      }
      throw e;
    }
    const defaults = new Map<string, { data: Float32Array; dims: number[] }>();
    for (const name of built.graph.overridableNames()) {
      defaults.set(name, { data: await built.graph.values(name), dims: built.graph.initializers.get(name)!.dims });
    }
    return new VitRuntime(
      spec,
      defaults,
      session,
      built.layout,
      built.layers,
      built.outputDims,
      built.params,
      built.extraOutputs,
      built.flopsPerImage,
      built.tensors,
      device,
      built.input,
    );
  }

  /** Names of the session's outputs. */
  get outputNames(): readonly string[] {
    return this.session?.outputNames ?? [];
  }

  /** Keys of weights that can be replaced per run. */
  get overridableWeights(): string[] {
    return [...this.params.keys()].filter((k) => this.defaults.has(this.params.get(k)!.init));
  }

  /**
   * Runs `n` images: `pixels` is [n, C, H, W] float32, already normalised (for a graph built
   * with `startLayer`: the residual stream [n, T, d] entering that block). Returns the
   * requested outputs, stacked over the selected layers.
   */
  async run(pixels: Float32Array, n: number, opts: RunOptions = {}): Promise<RunResult> {
    if (!this.session) throw new Error('VitRuntime: run after close');
    const { name, dims } = this.input;
    const per = dims.reduce((a, b) => a * b, 1);
    if (!Number.isInteger(n) || n < 1 || pixels.length !== n * per) {
      throw new UserError(`${name}: expected ${[n, ...dims].join(' x ')} = ${n * per} values, got ${pixels.length}`);
    }
    const feeds: Record<string, OrtTensor> = { [name]: new ort.Tensor('float32', pixels, [n, ...dims]) };
    for (const [key, data] of Object.entries(opts.weights ?? {})) {
      const p = this.params.get(key);
      if (!p || !this.defaults.has(p.init)) {
        throw new Error(`VitRuntime.run: weight ${key} was not built overridable (pass it in options.overridable)`);
      }
      const size = p.canonicalShape.reduce((a, b) => a * b, 1);
      if (data.length !== size) throw new Error(`VitRuntime.run: weight ${key} needs ${size} values, got ${data.length}`);
      const t = p.transform(data);
      feeds[p.init] = new ort.Tensor('float32', t, p.dims);
    }
    for (const [name, t] of this.defaults) if (!feeds[name]) feeds[name] = new ort.Tensor('float32', t.data, t.dims);
    const out = await this.session.run(feeds);
    const get = (name: string) => out[name].data as Float32Array;
    const res: RunResult = { n, extra: {} };
    const T = this.layout.tokens;
    const d = this.spec.width;
    const H = this.spec.heads;
    const stack = (prefix: string, layers: number[], per: number): Float32Array | undefined => {
      if (layers.length === 0) return undefined;
      if (layers.length === 1) return get(`${prefix}.${layers[0]}`);
      const L = layers.length;
      const o = new Float32Array(n * L * per);
      layers.forEach((l, j) => {
        const src = get(`${prefix}.${l}`);
        for (let i = 0; i < n; i++) o.set(src.subarray(i * per, (i + 1) * per), (i * L + j) * per);
      });
      return o;
    };
    res.ln = stack('ln', this.layers.ln, T * d);
    res.residual = stack('residual', this.layers.residual, T * d);
    res.attention = stack('attention', this.layers.attention, H * T * T);
    if (out.logits) res.logits = get('logits');
    if (out.features) res.features = get('features');
    if (out.final) res.final = get('final');
    for (const name of this.extraOutputs) res.extra[name] = { data: get(name), dims: out[name].dims.map(Number) };
    return res;
  }

  async close(): Promise<void> {
    const s = this.session;
    this.session = null;
    await s?.release();
  }
}
