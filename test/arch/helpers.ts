import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/checkpoint/safetensors.js';
import { pickStateDict, TorchCheckpoint } from '../../src/checkpoint/torch.js';
import type { FloatArray, TensorInfo, TensorSource } from '../../src/checkpoint/types.js';
import { buildSpec } from '../../src/arch/registry.js';
import { loadWeight, type LinearSpec, type NormSpec, type VitSpec, type WeightRef } from '../../src/arch/spec.js';
import type { CanonicalWeights, Lin, Norm } from '../fixtures/models.js';

export function tempDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `qkscope-arch-${tag}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface Opened {
  config: Record<string, unknown> | null;
  preprocessorConfig: Record<string, unknown> | null;
  source: TensorSource;
  close(): Promise<void>;
}

/** Several safetensors shards behind one TensorSource (fallback until checkpoint/open.ts exists). */
class ShardSource implements TensorSource {
  constructor(
    readonly location: string,
    private byName: Map<string, SafetensorsFile>,
    private files: SafetensorsFile[],
  ) {}
  names(): string[] {
    return [...this.byName.keys()];
  }
  info(name: string): TensorInfo | undefined {
    return this.byName.get(name)?.info(name);
  }
  read(name: string, r0?: number, r1?: number): Promise<FloatArray> {
    const f = this.byName.get(name);
    if (!f) throw new Error(`missing ${name}`);
    return f.read(name, r0, r1);
  }
  async close(): Promise<void> {
    for (const f of this.files) await f.close();
  }
}

const readJson = (p: string) => (existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>) : null);

async function fallbackOpen(path: string, part?: string): Promise<Opened> {
  if (statSync(path).isFile()) {
    const ckpt = await TorchCheckpoint.open(path);
    const r = pickStateDict(ckpt.root, path, part);
    const source = ckpt.source(r.dict, { location: r.part ? `${path} [${r.part}]` : path, prefixStrip: 'module.', ownsFile: true });
    return { config: null, preprocessorConfig: null, source, close: () => source.close() };
  }
  const config = readJson(join(path, 'config.json'));
  const preprocessorConfig = readJson(join(path, 'preprocessor_config.json'));
  let source: TensorSource;
  if (existsSync(join(path, 'model.safetensors'))) source = await SafetensorsFile.open(join(path, 'model.safetensors'));
  else if (existsSync(join(path, 'model.safetensors.index.json'))) {
    const idx = readJson(join(path, 'model.safetensors.index.json')) as { weight_map: Record<string, string> };
    const files = new Map<string, SafetensorsFile>();
    const byName = new Map<string, SafetensorsFile>();
    for (const [name, file] of Object.entries(idx.weight_map)) {
      if (!files.has(file)) files.set(file, await SafetensorsFile.open(join(path, file)));
      byName.set(name, files.get(file)!);
    }
    source = new ShardSource(path, byName, [...files.values()]);
  } else if (existsSync(join(path, 'pytorch_model.bin'))) {
    const ckpt = await TorchCheckpoint.open(join(path, 'pytorch_model.bin'));
    source = ckpt.source(pickStateDict(ckpt.root, path).dict, { ownsFile: true });
  } else throw new Error(`no weights in ${path}`);
  return { config, preprocessorConfig, source, close: () => source.close() };
}

/** Opens a fixture with checkpoint/open.ts's openModel when it exists, else a local fallback. */
export async function openFixture(path: string, part?: string): Promise<Opened> {
  const openPath = '../../src/checkpoint/open.js';
  let mod: { openModel?: (p: string, o: Record<string, unknown>) => Promise<Opened & { close(): Promise<void> }> } | undefined;
  try {
    mod = await import(openPath);
  } catch {
    mod = undefined;
  }
  if (mod?.openModel) {
    const o = await mod.openModel(path, { offline: true, ...(part ? { part } : {}) });
    return { config: o.config ?? null, preprocessorConfig: o.preprocessorConfig ?? null, source: o.source, close: () => o.close() };
  }
  return fallbackOpen(path, part);
}

/** Opens, builds the spec, runs `fn`, closes. */
export async function withSpec<T>(path: string, opts: { numHeads?: number; part?: string; modelId?: string }, fn: (spec: VitSpec) => Promise<T>): Promise<T> {
  const o = await openFixture(path, opts.part);
  try {
    const spec = buildSpec({
      config: o.config,
      preprocessorConfig: o.preprocessorConfig,
      source: o.source,
      modelId: opts.modelId ?? path,
      ...(opts.numHeads !== undefined ? { numHeads: opts.numHeads } : {}),
      ...(opts.part ? { component: opts.part } : {}),
    });
    return await fn(spec);
  } finally {
    await o.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Exact comparisons against canonical weights
// ---------------------------------------------------------------------------------------------

export async function expectRef(ref: WeightRef | undefined, want: ArrayLike<number> | undefined, what: string): Promise<void> {
  if (want === undefined) {
    assert.equal(ref, undefined, `${what}: expected no tensor, got ${ref?.name}`);
    return;
  }
  assert.ok(ref, `${what}: missing in the spec`);
  const got = await loadWeight(ref);
  assert.equal(got.length, want.length, `${what}: ${got.length} values, want ${want.length} (${ref.name})`);
  assert.equal(ref.shape.reduce((a, x) => a * x, 1), want.length, `${what}: shape [${ref.shape}] does not hold ${want.length} values`);
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) assert.fail(`${what}: element ${i} is ${got[i]}, want ${want[i]} (${ref.name})`);
}

export async function expectLinear(l: LinearSpec | undefined, want: Lin | undefined, what: string, opts: { bias?: boolean } = {}): Promise<void> {
  if (!want) {
    assert.equal(l, undefined, `${what}: expected none`);
    return;
  }
  assert.ok(l, `${what}: missing`);
  await expectRef(l.weight, want.w, `${what}.weight`);
  await expectRef(l.bias, opts.bias === false ? undefined : want.b, `${what}.bias`);
}

export async function expectNorm(n: NormSpec | undefined, want: Norm | undefined, eps: number | undefined, what: string): Promise<void> {
  if (!want) {
    assert.equal(n, undefined, `${what}: expected none`);
    return;
  }
  assert.ok(n, `${what}: missing`);
  assert.equal(n.kind, 'layernorm');
  if (eps !== undefined) assert.equal(n.eps, eps, `${what}.eps`);
  await expectRef(n.weight, want.w, `${what}.weight`);
  await expectRef(n.bias, want.b, `${what}.bias`);
}

export interface Expect {
  eps: number;
  /** Whether q/k/v/o biases are kept (all true normally). */
  headBias?: boolean;
  /** Canonical final norm goes to spec.finalNorm (default) or is absent. */
  finalNorm?: boolean;
}

/** Checks every tensor of the spec against the canonical weights. */
export async function expectSpecMatches(spec: VitSpec, w: CanonicalWeights, e: Expect): Promise<void> {
  const o = w.opts;
  assert.equal(spec.width, o.d, 'width');
  assert.equal(spec.heads, o.heads, 'heads');
  assert.equal(spec.headDim, o.d / o.heads, 'headDim');
  assert.equal(spec.kvHeads, o.heads, 'kvHeads');
  assert.equal(spec.layers, o.layers, 'layers');
  assert.equal(spec.blocks.length, o.layers, 'blocks');
  assert.equal(spec.modality, 'vision');
  const tokens = [...(o.cls ? ['cls'] : []), ...(o.dist ? ['dist'] : []), ...Array(o.reg).fill('reg')];
  assert.deepEqual(spec.tokenLayout, tokens, 'tokenLayout');
  if (!o.inputWidth) {
    assert.equal(spec.patchSize, o.patch, 'patchSize');
    assert.equal(spec.channels, o.channels, 'channels');
    assert.ok(spec.patchEmbed, 'patchEmbed');
    assert.deepEqual(spec.patchEmbed.weight.shape, [o.d, o.channels, o.patch, o.patch]);
    await expectRef(spec.patchEmbed.weight, w.patchW, 'patchEmbed.weight');
    await expectRef(spec.patchEmbed.bias, w.patchB, 'patchEmbed.bias');
  } else {
    assert.equal(spec.patchEmbed, undefined);
    await expectLinear(spec.inputProj, w.inputProj, 'inputProj');
    await expectLinear(spec.outputProj, w.outputProj, 'outputProj');
    await expectRef(spec.maskToken, w.maskToken, 'maskToken');
  }
  await expectRef(spec.clsToken, w.cls, 'clsToken');
  await expectRef(spec.distToken, w.dist, 'distToken');
  await expectRef(spec.registerTokens, w.reg, 'registerTokens');
  if (w.pos) {
    assert.ok(spec.posEmbed, 'posEmbed');
    assert.deepEqual(spec.posEmbed.grid, [w.grid, w.grid], 'posEmbed.grid');
    assert.equal(spec.posEmbed.special, o.posSpecial, 'posEmbed.special');
    assert.deepEqual(spec.posEmbed.weight.shape, [w.posRows, o.d]);
    await expectRef(spec.posEmbed.weight, w.pos, 'posEmbed');
  } else assert.equal(spec.posEmbed, undefined, 'posEmbed');
  await expectNorm(spec.preNorm, w.preNorm, e.eps, 'preNorm');
  for (let i = 0; i < o.layers; i++) {
    const b = spec.blocks[i];
    const c = w.layer(i);
    const at = `block ${i}`;
    await expectNorm(b.norm1, c.norm1, e.eps, `${at} norm1`);
    await expectNorm(b.norm2, c.norm2, e.eps, `${at} norm2`);
    for (const key of ['q', 'k', 'v', 'o'] as const) {
      assert.deepEqual(b[key].weight.shape, [o.d, o.d], `${at} ${key} shape`);
      await expectLinear(b[key], c[key], `${at} ${key}`);
    }
    await expectRef(b.ls1, c.ls1, `${at} ls1`);
    await expectRef(b.ls2, c.ls2, `${at} ls2`);
    if (o.mlpKind === 'swiglu') {
      assert.equal(b.mlp.kind, 'swiglu');
      if (b.mlp.kind === 'swiglu') {
        await expectLinear(b.mlp.w12, c.fc1, `${at} w12`);
        await expectLinear(b.mlp.w3, c.fc2, `${at} w3`);
      }
    } else {
      assert.equal(b.mlp.kind, 'mlp');
      if (b.mlp.kind === 'mlp') {
        await expectLinear(b.mlp.fc1, c.fc1, `${at} fc1`);
        await expectLinear(b.mlp.fc2, c.fc2, `${at} fc2`);
      }
    }
    const rel = o.relPos === 'layer' ? c.relPos : o.relPos === 'shared' ? w.relPosShared : undefined;
    if (rel) {
      assert.ok(b.relPosBias, `${at} relPosBias`);
      assert.deepEqual(b.relPosBias.window, [w.grid, w.grid]);
      assert.deepEqual(b.relPosBias.table.shape, [w.relRows, o.heads]);
    }
    await expectRef(b.relPosBias?.table, rel, `${at} relPos`);
  }
  if (e.finalNorm !== false) await expectNorm(spec.finalNorm, w.finalNorm, e.eps, 'finalNorm');
  await expectNorm(spec.fcNorm, w.fcNorm, e.eps, 'fcNorm');
}
