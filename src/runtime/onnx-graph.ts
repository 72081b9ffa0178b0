/**
 * A small ONNX graph builder over `onnx-proto` messages: nodes, float32 initializers, graph
 * inputs/outputs and serialisation. It knows nothing about ViTs; `vit-graph.ts` drives it
 * from a VitSpec, and callers append their own computations to the same graph
 * (e.g. a MatMul of `ln` with mode vectors followed by ReduceMax over patch tokens).
 *
 * Tensor names are plain strings. Every op helper returns the name of its (first) output.
 */
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxNs } from 'onnx-proto';

const { onnx } = onnxProto;

/** Default-domain opset: 17 has LayerNormalization; ReduceMean still takes `axes` as an attribute. */
export const OPSET = 17;
/** onnxruntime's contrib-op domain (Gelu, FastGelu, QuickGelu, BiasGelu, Attention, SkipLayerNormalization). */
export const MS_DOMAIN = 'com.microsoft';

/** An attribute value: a plain number is an INT, `{ f }` a FLOAT, number[] INTS, `{ floats }` FLOATS, string a STRING. */
export type AttrValue = number | number[] | string | { f: number } | { floats: number[] };

export type Dim = number | string;

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

function attribute(name: string, v: AttrValue): OnnxNs.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: ${v} is not an integer (wrap floats as { f })`);
    return { name, type: T.INT, i: v };
  }
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ('f' in v) return { name, type: T.FLOAT, f: v.f };
  return { name, type: T.FLOATS, floats: v.floats };
}

function valueInfo(name: string, elemType: number, dims?: Dim[]): OnnxNs.IValueInfoProto {
  const shape = dims && { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) };
  return { name, type: { tensorType: { elemType, shape } } };
}

function varintLen(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function bytesOf(a: Float32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export interface InitializerInfo {
  dims: number[];
  /**
   * The values, or a loader called once when the model is serialised: weights are read
   * lazily so that only the serialised model and one weight are in memory at a time.
   */
  data: Float32Array | (() => Promise<Float32Array>);
  /**
   * A graph input instead of an initializer, so each run feeds it (its default `data`, or a
   * replacement such as an edited weight) without rebuilding the session.
   */
  overridable: boolean;
}

export class OnnxGraph {
  readonly nodes: OnnxNs.INodeProto[] = [];
  readonly inputs: OnnxNs.IValueInfoProto[] = [];
  readonly outputs: OnnxNs.IValueInfoProto[] = [];
  /** Float initializers by name, in insertion order. */
  readonly initializers = new Map<string, InitializerInfo>();
  private readonly intInits: OnnxNs.ITensorProto[] = [];
  private readonly used = new Set<string>();
  private readonly constCache = new Map<string, string>();
  private counter = 0;
  private usesMs = false;

  constructor(readonly name = 'graph') {}

  /** A fresh tensor name with the given prefix. */
  fresh(prefix: string): string {
    let n = prefix;
    while (this.used.has(n)) n = `${prefix}_${++this.counter}`;
    this.used.add(n);
    return n;
  }

  has(name: string): boolean {
    return this.used.has(name);
  }

  /** Declares a float32 graph input (dims: numbers, or strings for symbolic dimensions). */
  input(name: string, dims: Dim[]): string {
    if (this.used.has(name)) throw new Error(`onnx graph: name ${name} already used`);
    this.used.add(name);
    this.inputs.push(valueInfo(name, FLOAT, dims));
    return name;
  }

  /** Marks `tensor` as a graph output named `name` (an Identity is inserted when names differ). */
  output(name: string, tensor: string, dims?: Dim[]): string {
    if (name !== tensor) {
      if (this.used.has(name)) throw new Error(`onnx graph: output name ${name} already used`);
      this.used.add(name);
      this.nodes.push({ opType: 'Identity', input: [tensor], output: [name], name: `out_${name}` });
    }
    this.outputs.push(valueInfo(name, FLOAT, dims));
    return name;
  }

  /**
   * Adds a float32 initializer (a weight): its values, or a loader run at serialisation.
   * `overridable` makes it a graph input fed per run (see InitializerInfo; needs the values).
   * A loader's array is copied as soon as it returns and may be reused by the next loader
   * (the graph builder's scratch buffer): `values()` of a lazy weight is valid until the next call.
   */
  init(name: string, dims: number[], data: Float32Array | (() => Promise<Float32Array>), opts: { overridable?: boolean } = {}): string {
    const size = dims.reduce((a, b) => a * b, 1);
    if (typeof data !== 'function' && data.length !== size) throw new Error(`onnx graph: initializer ${name} has ${data.length} values, dims [${dims}] need ${size}`);
    if (typeof data === 'function' && opts.overridable) throw new Error(`onnx graph: overridable initializer ${name} needs its values`);
    const n = this.fresh(name);
    this.initializers.set(n, { dims, data, overridable: !!opts.overridable });
    return n;
  }

  /** The values of an initializer (runs its loader, checking the size). */
  async values(name: string): Promise<Float32Array> {
    const t = this.initializers.get(name);
    if (!t) throw new Error(`onnx graph: no initializer ${name}`);
    const v = typeof t.data === 'function' ? await t.data() : t.data;
    const size = t.dims.reduce((a, b) => a * b, 1);
    if (v.length !== size) throw new Error(`onnx graph: initializer ${name} has ${v.length} values, dims [${t.dims}] need ${size}`);
    return v;
  }

  /** Replaces an initializer's values before the graph is serialised. */
  replaceInit(name: string, data: Float32Array): void {
    const t = this.initializers.get(name);
    if (!t) throw new Error(`onnx graph: no initializer ${name}`);
    const size = t.dims.reduce((a, b) => a * b, 1);
    if (data.length !== size) throw new Error(`onnx graph: replacement for ${name} has ${data.length} values, expected ${size}`);
    t.data = data;
  }

  /** An int64 constant (shapes, axes, indices); identical constants are shared. */
  ints(values: number[], dims: number[] = [values.length]): string {
    const key = `${dims.join('x')}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const n = this.fresh(`const_i64_${dims.length ? values.length : 's'}`);
    this.intInits.push({ name: n, dims, dataType: INT64, rawData: bytesOf(BigInt64Array.from(values.map((v) => BigInt(v)))) });
    this.constCache.set(key, n);
    return n;
  }

  /** A float32 constant (scalars, small vectors); identical constants are shared. */
  floats(values: number[], dims: number[] = [values.length]): string {
    const key = `f${dims.join('x')}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const n = this.init(`const_f32`, dims, Float32Array.from(values));
    this.constCache.set(key, n);
    return n;
  }

  /**
   * Appends a node; returns its output names (`outputs` of them). `outputs` as booleans names
   * only the outputs wanted and leaves the others '' (ONNX's "optional output not produced").
   */
  opN(type: string, inputs: string[], outputs: number | boolean[], attrs: Record<string, AttrValue> = {}, opts: { domain?: string; name?: string } = {}): string[] {
    const base = opts.name ?? type.toLowerCase();
    const want = typeof outputs === 'number' ? Array<boolean>(outputs).fill(true) : outputs;
    const outs = want.map((w, i) => (w ? this.fresh(want.length === 1 ? base : `${base}_${i}`) : ''));
    if (opts.domain === MS_DOMAIN) this.usesMs = true;
    this.nodes.push({
      opType: type,
      domain: opts.domain ?? '',
      input: inputs,
      output: outs,
      name: this.fresh(`n_${base}`),
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs;
  }

  /** Appends a single-output node; returns its output name. */
  op(type: string, inputs: string[], attrs: Record<string, AttrValue> = {}, opts: { domain?: string; name?: string } = {}): string {
    return this.opN(type, inputs, 1, attrs, opts)[0];
  }

  // Common ops, named for readability at the call sites.
  matmul(a: string, b: string, name?: string): string {
    return this.op('MatMul', [a, b], {}, { name });
  }
  add(a: string, b: string, name?: string): string {
    return this.op('Add', [a, b], {}, { name });
  }
  mul(a: string, b: string, name?: string): string {
    return this.op('Mul', [a, b], {}, { name });
  }
  reshape(x: string, shape: number[], name?: string): string {
    return this.op('Reshape', [x, this.ints(shape)], {}, { name });
  }
  transpose(x: string, perm: number[], name?: string): string {
    return this.op('Transpose', [x], { perm }, { name });
  }
  /** Slice along one axis: [start, end). */
  slice(x: string, axis: number, start: number, end: number, name?: string): string {
    return this.op('Slice', [x, this.ints([start]), this.ints([end]), this.ints([axis])], {}, { name });
  }
  reduceMax(x: string, axes: number[], keepdims = false, name?: string): string {
    return this.op('ReduceMax', [x], { axes, keepdims: keepdims ? 1 : 0 }, { name });
  }
  reduceMean(x: string, axes: number[], keepdims = false, name?: string): string {
    return this.op('ReduceMean', [x], { axes, keepdims: keepdims ? 1 : 0 }, { name });
  }

  /**
   * Drops the nodes no graph output depends on and the weights only they read (overridable
   * weights stay: they are inputs the runner feeds). onnxruntime runs dead nodes too, so a
   * graph asked for an early layer's output would otherwise compute the whole model. Nodes are
   * appended after their inputs exist, so one backward pass finds everything needed.
   */
  prune(): void {
    const needed = new Set(this.outputs.map((o) => o.name!));
    const keep: OnnxNs.INodeProto[] = [];
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const n = this.nodes[i];
      if (!n.output?.some((o) => o && needed.has(o))) continue;
      keep.push(n);
      for (const x of n.input ?? []) if (x) needed.add(x);
    }
    this.nodes.splice(0, this.nodes.length, ...keep.reverse());
    for (const [name, t] of this.initializers) if (!t.overridable && !needed.has(name)) this.initializers.delete(name);
    const ints = this.intInits.filter((t) => needed.has(t.name!));
    this.intInits.splice(0, this.intInits.length, ...ints);
  }

  /** Total bytes of float initializers. */
  weightBytes(): number {
    let n = 0;
    for (const t of this.initializers.values()) n += 4 * t.dims.reduce((a, b) => a * b, 1);
    return n;
  }

  /** Names of the overridable weights (graph inputs whose default data the runner feeds). */
  overridableNames(): string[] {
    return [...this.initializers].filter(([, t]) => t.overridable).map(([n]) => n);
  }

  /**
   * The ModelProto message without the float weights (they are appended by `encode` or
   * written by `writeExternal`); overridable weights are listed as graph inputs.
   */
  toModel(): OnnxNs.IModelProto {
    const extraInputs: OnnxNs.IValueInfoProto[] = [];
    for (const [name, t] of this.initializers) {
      // onnxruntime-node cannot feed initializers that are also graph inputs, so an
      // overridable weight is a plain (required) input whose default the caller feeds.
      if (t.overridable) extraInputs.push(valueInfo(name, FLOAT, t.dims));
    }
    const opsetImport: OnnxNs.IOperatorSetIdProto[] = [{ domain: '', version: OPSET }];
    if (this.usesMs) opsetImport.push({ domain: MS_DOMAIN, version: 1 });
    return {
      irVersion: 8,
      producerName: 'qkscope',
      opsetImport,
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: [...this.intInits],
        input: [...this.inputs, ...extraInputs],
        output: this.outputs,
      },
    };
  }

  /**
   * Serialised model bytes, written straight into one buffer: the model without its float
   * weights, then one `graph { initializer { name dims data_type raw_data } }` record per
   * weight (protobuf merges repeated occurrences of a message field, so this parses as one
   * graph). Lazy weights are loaded one at a time and dropped once copied (with `release`,
   * in-memory ones are dropped too). protobuf's 2 GiB limit applies (see `writeExternal`).
   */
  async encode(opts: { release?: boolean } = {}): Promise<Uint8Array> {
    const head = this.encodeModel(this.toModel());
    const recs: { name: string; t: InitializerInfo; th: Uint8Array; rawLen: number; tensorLen: number; graphLen: number }[] = [];
    let total = head.length;
    for (const [name, t] of this.initializers) {
      if (t.overridable) continue;
      const th = onnx.TensorProto.encode(onnx.TensorProto.create({ name, dims: t.dims, dataType: FLOAT })).finish();
      const rawLen = 4 * t.dims.reduce((a, b) => a * b, 1);
      const tensorLen = th.length + 1 + varintLen(rawLen) + rawLen;
      const graphLen = 1 + varintLen(tensorLen) + tensorLen;
      total += 1 + varintLen(graphLen) + graphLen;
      recs.push({ name, t, th, rawLen, tensorLen, graphLen });
    }
    if (total > 0x7fffffff) throw new Error(`onnx graph: ${total} bytes exceed protobuf's 2 GiB limit; use external data`);
    const out = new Uint8Array(total);
    out.set(head, 0);
    let at = head.length;
    const varint = (v: number) => {
      while (v >= 0x80) {
        out[at++] = (v & 0x7f) | 0x80;
        v = Math.floor(v / 128);
      }
      out[at++] = v;
    };
    for (const r of recs) {
      out[at++] = 58; // ModelProto.graph (7, LEN)
      varint(r.graphLen);
      out[at++] = 42; // GraphProto.initializer (5, LEN)
      varint(r.tensorLen);
      out.set(r.th, at);
      at += r.th.length;
      out[at++] = 74; // TensorProto.raw_data (9, LEN)
      varint(r.rawLen);
      out.set(bytesOf(await this.values(r.name)), at);
      at += r.rawLen;
      if (opts.release) r.t.data = () => Promise.reject(new Error(`onnx graph: ${r.name} was released after serialisation`));
    }
    if (at !== total) throw new Error(`onnx graph: encoded ${at} bytes, expected ${total}`);
    return out;
  }

  /**
   * Writes `model.onnx` with its float weights in `weights.bin` beside it (ONNX external
   * data, 4 KiB-aligned; other file names with `names`), for models over protobuf's 2 GiB
   * limit. Returns the model path.
   */
  async writeExternal(dir: string, names: { model?: string; data?: string } = {}): Promise<string> {
    const dataName = names.data ?? 'weights.bin';
    const model = this.toModel();
    const inits = model.graph!.initializer!;
    const fd = openSync(join(dir, dataName), 'w');
    let offset = 0;
    try {
      for (const [name, t] of this.initializers) {
        if (t.overridable) continue;
        const raw = bytesOf(await this.values(name));
        offset = Math.ceil(offset / 4096) * 4096;
        let done = 0;
        while (done < raw.byteLength) done += writeSync(fd, raw, done, raw.byteLength - done, offset + done);
        inits.push({
          name,
          dims: t.dims,
          dataType: FLOAT,
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [
            { key: 'location', value: dataName },
            { key: 'offset', value: String(offset) },
            { key: 'length', value: String(raw.byteLength) },
          ],
        });
        offset += raw.byteLength;
      }
    } finally {
      closeSync(fd);
    }
    const path = join(dir, names.model ?? 'model.onnx');
    writeFileSync(path, this.encodeModel(model));
    return path;
  }

  /** Serialises a ModelProto message (e.g. one from `toModel` edited for external data). */
  encodeModel(model: OnnxNs.IModelProto): Uint8Array {
    return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
  }
}
