/**
 * The one run-directory writer. Every command's `write(result, runDir)` goes through it, so
 * every run directory has the same guarantees:
 *
 * - a manifest (`<command>.json`, or `summary.json` for svd) with the same header everywhere:
 *   `tool {name, version}`, `command`, `created`, `model`, `options`, `inputs`, `files`
 *   (name → what it holds) and `shapes`, followed by the command's own fields;
 * - data files (.npy, .csv, .json) and figures (.svg + .png) written to `NAME.partial` and
 *   renamed into place only at `commit()`, the manifest last: a directory whose manifest is
 *   there is complete, an interrupted one never looks complete;
 * - disk-full, quota and permission errors as one line naming the file (io/fs.ts);
 * - one writer at a time: the directory's lock (run-lock.ts) is held from construction to
 *   commit or abort.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { VitSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { ensureDir, fsErrorMessage } from '../io/fs.js';
import { NpyStreamWriter, writeNpy, type NpyDtype, type NpyInput } from '../io/npy.js';
import { toCsv } from '../io/csv.js';
import { svgToPng } from '../io/png.js';
import { VERSION } from '../version.js';
import { lockRunDir } from './run-lock.js';

export const TOOL = { name: 'qkscope', version: VERSION } as const;

/** What every manifest says about the model. */
export interface ModelInfo {
  id: string;
  /** What the user passed as <model> (a path or hub id). */
  input: string | null;
  family: string;
  modality: string;
  layers: number;
  heads: number;
  kv_heads: number;
  width: number;
  head_dim: number;
  patch_size: number | null;
  notes: string[];
}

export function modelInfo(spec: VitSpec, input?: string | null): ModelInfo {
  return {
    id: spec.modelId,
    input: input ?? null,
    family: spec.family,
    modality: spec.modality,
    layers: spec.layers,
    heads: spec.heads,
    kv_heads: spec.kvHeads,
    width: spec.width,
    head_dim: spec.headDim,
    patch_size: spec.modality === 'vision' ? spec.patchSize : null,
    notes: spec.notes ?? [],
  };
}

/** The header shared by every manifest. */
export interface ManifestHeader {
  tool: { name: string; version: string };
  command: string;
  created: string;
  model: ModelInfo | null;
  options: Record<string, unknown>;
  inputs: unknown;
  files: Record<string, string>;
  shapes: Record<string, number[]>;
}

export interface RunDirOptions {
  /** Manifest file name (default `<command>.json`). */
  manifest?: string;
  /** Refuse a directory whose manifest was written by another command. */
  refuseOtherCommand?: boolean;
}

/** Writes one run directory; nothing is visible under its final name before `commit()`. */
export class RunDir {
  readonly manifestName: string;
  /** Every NAME whose NAME.partial this writer creates, registered before the write (so an abort removes half-written ones too). */
  private partials = new Set<string>();
  private aborted = false;
  /** The error that aborted this writer (a full disk): later writes fail with it too. */
  private abortCause: Error | null = null;
  private streams: NpyStreamWriter[] = [];
  private files: Record<string, string> = {};
  private shapes: Record<string, number[]> = {};
  private committed = false;
  private readonly release: () => void;

  constructor(
    readonly dir: string,
    readonly command: string,
    opts: RunDirOptions = {},
  ) {
    this.manifestName = opts.manifest ?? `${command}.json`;
    ensureDir(dir);
    this.release = lockRunDir(dir, command);
    const existing = join(dir, this.manifestName);
    if (opts.refuseOtherCommand && existsSync(existing)) {
      let prev: { command?: string; kind?: string } = {};
      try {
        prev = JSON.parse(readFileSync(existing, 'utf8'));
      } catch {
        /* unreadable: overwritten below */
      }
      const was = prev.command ?? prev.kind;
      if (was && was !== command) {
        this.release();
        throw new UserError(`${dir}: already holds a ${was} run; choose another --out`);
      }
    }
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  private describe(name: string, about: string, shape?: readonly number[]): void {
    this.files[name] = about;
    if (shape) this.shapes[name.replace(/\.npy$/, '')] = [...shape];
  }

  /** Registers NAME.partial before it is written; refuses writes after an abort. */
  private claim(name: string): string {
    if (this.aborted) throw this.abortCause ?? new Error(`${this.dir}: write of ${name} after the run directory was aborted`);
    this.partials.add(name);
    return this.path(`${name}.partial`);
  }

  private writePartial(name: string, data: string | Uint8Array): void {
    const tmp = this.claim(name);
    // Names may hold sub-folders (a static site's data/ and img/).
    if (name.includes('/')) this.guard(name, () => ensureDir(dirname(tmp)));
    this.guard(name, () => writeFileSync(tmp, data));
  }

  private guard<T>(name: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      const msg = fsErrorMessage(e, this.path(name));
      if (msg) {
        const err = this.abortCause ?? new UserError(msg);
        this.abortCause = err;
        this.abort();
        throw err;
      }
      throw e;
    }
  }

  npy(name: string, dtype: NpyDtype, shape: readonly number[], data: NpyInput, about: string): void {
    const tmp = this.claim(name);
    this.guard(name, () => writeNpy(tmp, dtype, shape, data));
    this.describe(name, about, shape);
  }

  /** A streamed .npy (rows appended as batches finish); close it (or `closeRows`) before commit. */
  npyStream(name: string, dtype: NpyDtype, shape: readonly number[], about: string): NpyStreamWriter {
    const tmp = this.claim(name);
    const w = this.guard(name, () => NpyStreamWriter.create(tmp, dtype, shape));
    this.streams.push(w);
    this.describe(name, about, shape);
    return w;
  }

  /** Records the final shape of a streamed array closed with fewer rows. */
  reshape(name: string, shape: readonly number[]): void {
    this.shapes[name.replace(/\.npy$/, '')] = [...shape];
  }

  csv(name: string, rows: ReadonlyArray<ReadonlyArray<unknown>>, about: string): void {
    this.writePartial(name, toCsv(rows as (string | number | null | undefined | boolean)[][]));
    this.describe(name, about);
  }

  json(name: string, value: unknown, about: string): void {
    this.writePartial(name, JSON.stringify(value, null, 1) + '\n');
    this.describe(name, about);
  }

  /** Raw bytes; `about` null: covered by a `describeGroup` entry (sites of thousands of files). */
  bytes(name: string, data: Uint8Array, about: string | null): void {
    this.writePartial(name, data);
    if (about !== null) this.describe(name, about);
  }

  /** One `files` entry for many files (a pattern such as `data/img/KEY.js`). */
  describeGroup(pattern: string, about: string): void {
    this.describe(pattern, about);
  }

  /** A file another writer produced (ONNX external data): moved in now as NAME.partial, into place at commit. */
  adopt(name: string, from: string, about: string): void {
    const tmp = this.claim(name);
    this.guard(name, () => renameSync(from, tmp));
    this.describe(name, about);
  }

  /** A figure as `base.svg` and `base.png` (SVG rasterised at 144 dpi). */
  async figure(base: string, svg: string, about: string, opts: { photos?: boolean } = {}): Promise<void> {
    this.writePartial(`${base}.svg`, svg);
    // Described now, so that figures rasterised concurrently keep the manifest's order.
    this.describe(`${base}.svg/.png`, about);
    this.writePartial(`${base}.png`, await svgToPng(svg, 2, { photos: opts.photos }));
  }

  /** The manifest header for `model`, `options` and `inputs` (files and shapes as written so far). */
  header(model: ModelInfo | null, options: Record<string, unknown>, inputs: unknown): ManifestHeader {
    return { tool: { ...TOOL }, command: this.command, created: new Date().toISOString(), model, options, inputs, files: { ...this.files }, shapes: { ...this.shapes } };
  }

  /**
   * Renames every file into place and writes the manifest last (header + the command's own
   * fields). Returns the manifest's path.
   */
  commit(header: ManifestHeader, fields: Record<string, unknown> = {}): string {
    for (const w of this.streams) w.close(); // no-op for writers already closed
    this.streams = [];
    const manifest = { ...header, files: { [this.manifestName]: 'this manifest', ...this.files }, shapes: { ...this.shapes }, ...fields };
    for (const name of this.partials) this.guard(name, () => renameSync(this.path(`${name}.partial`), this.path(name)));
    this.partials.clear();
    const tmp = this.path(`${this.manifestName}.partial`);
    this.guard(this.manifestName, () => {
      writeFileSync(tmp, JSON.stringify(manifest, null, 1) + '\n');
      renameSync(tmp, this.path(this.manifestName));
    });
    this.committed = true;
    this.release();
    return this.path(this.manifestName);
  }

  /** Removes every partial file (after an error upstream). */
  abort(): void {
    this.aborted = true;
    for (const w of this.streams) w.abort();
    this.streams = [];
    for (const name of this.partials) rmSync(this.path(`${name}.partial`), { force: true });
    this.release();
  }

  get isCommitted(): boolean {
    return this.committed;
  }
}
