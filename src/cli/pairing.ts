import { existsSync, statSync, writeFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { positiveInt, addModelOptions, type ModelFlags } from './model-options.js';
import { UserError } from '../errors.js';
import { openScanRun, type ScanMeta } from '../store/scan-db.js';
import { decodeImage } from '../images/decode.js';
import { preprocessFor, preprocessImage } from '../images/preprocess.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { parseDevice, type Device } from '../runtime/device.js';
import { instanceCoverage, readInstanceMask } from '../data/masks.js';
import { layerPairing, topObject, type LayerPairing, type ModePairing } from '../analysis/pairing.js';
import { pairingFigure } from '../report/figures/pairing.js';
import { writeFigure } from '../report/svd-figures.js';
import { toCsv } from '../io/csv.js';
import { VERSION } from '../version.js';
import type { VitSpec } from '../arch/spec.js';
import type Database from 'better-sqlite3';
import { ensureDir } from '../io/fs.js';
import { loadSpec } from '../arch/load.js';

interface PairingFlags extends ModelFlags {
  out: string;
  model?: string;
  top: number;
  minPatches: number;
  batch: number;
  device: string;
  figures: boolean;
}

export const PAIRING_DEFINITION =
  'For each (layer, head, mode), its top-k images of the positive sign from the scan. On each image, object = an instance of the mask (0 = unlabelled, ignored; instances covering less than --min-patches patches dropped); ' +
  'mean_o(M) = Σ_p c_o(p) M(p) / Σ_p c_o(p) with c_o the instance’s per-patch coverage (mask resized and cropped like the image); the top query object maximises mean_o(Q_n), Q_n(p) = x_p·u_n, ' +
  'the top key object maximises mean_o(K_n), K_n(p) = x_p·v_n (x = the scan’s embedding). p_n = fraction of images where they coincide; per layer Σ σ_n p_n / Σ σ_n over heads and modes.';

/** `<masks>/NAME.png` or `<masks>/NAME_seg.png` (ADE20K) for image NAME.jpg. */
export function instanceMaskPath(masks: string, image: string): string | null {
  const stem = basename(image, extname(image));
  for (const c of [`${stem}.png`, `${stem}_seg.png`, `${stem}.instances.png`]) {
    const p = join(masks, c);
    if (existsSync(p)) return p;
  }
  return null;
}

interface Job {
  layer: number;
  head: number;
  mode: number;
}

export async function runPairing(
  spec: VitSpec,
  db: Database.Database,
  meta: ScanMeta,
  masks: string,
  opts: { outDir: string; top?: number; minPatches?: number; batch?: number; device?: Device; figures?: boolean; run?: string; onStart?: (total: number) => void; onProgress?: (done: number, total: number) => void },
): Promise<{ layers: LayerPairing[]; modes: ModePairing[]; images: number; skipped: { path: string; reason: string }[] }> {
  const top = opts.top ?? 5;
  const d = spec.width;
  if (meta.model.width !== d || meta.model.layers !== spec.blocks.length || meta.model.heads !== spec.heads) {
    throw new UserError(`--model: the scan was made with a model of width ${meta.model.width}, ${meta.model.layers} layers, ${meta.model.heads} heads; this one has ${d}, ${spec.blocks.length}, ${spec.heads}`);
  }
  const { pp, options } = preprocessFor(spec);
  const imageSize: [number, number] = [...pp.crop];
  if (meta.image_size && (meta.image_size[0] !== imageSize[0] || meta.image_size[1] !== imageSize[1])) {
    throw new UserError(`the scan ran at ${meta.image_size.join('x')} but the model preprocesses to ${imageSize.join('x')}; use the model the scan was made with`);
  }
  const sigma = new Map<string, number>();
  for (const r of db.prepare('SELECT layer, head, mode, sigma FROM modes').all() as { layer: number; head: number; mode: number; sigma: number }[]) sigma.set(`${r.layer}/${r.head}/${r.mode}`, r.sigma);
  const vectors = new Map<string, { u: Float32Array; v: Float32Array }>();
  const f32 = (b: Buffer) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  for (const r of db.prepare('SELECT layer, head, u, v FROM vectors').all() as { layer: number; head: number; u: Buffer; v: Buffer }[]) vectors.set(`${r.layer}/${r.head}`, { u: f32(r.u), v: f32(r.v) });
  const rows = db
    .prepare('SELECT t.layer, t.head, t.mode, t.image_id AS id, i.path AS path, i.source AS source FROM topk t JOIN images i ON i.id = t.image_id WHERE t.sign > 0 AND t.rank < ? ORDER BY t.image_id')
    .all(top) as { layer: number; head: number; mode: number; id: number; path: string; source: string }[];
  if (rows.length === 0) throw new UserError(`${opts.run ?? 'run.db'}: the scan has no top-k images yet; run or finish \`qkscope scan\` first`);
  const byImage = new Map<number, { path: string; source: string; jobs: Job[] }>();
  for (const r of rows) {
    let e = byImage.get(r.id);
    if (!e) byImage.set(r.id, (e = { path: r.path, source: r.source, jobs: [] }));
    e.jobs.push({ layer: r.layer, head: r.head, mode: r.mode });
  }
  // Check every usable image has its mask before any work.
  const skipped: { path: string; reason: string }[] = [];
  const todo: { path: string; mask: string; jobs: Job[] }[] = [];
  for (const e of byImage.values()) {
    if (e.source !== 'file' || !existsSync(e.path)) {
      skipped.push({ path: e.path, reason: e.source !== 'file' ? `${e.source} member (only plain image files are supported)` : 'file no longer exists' });
      continue;
    }
    const mask = instanceMaskPath(masks, e.path);
    if (!mask) {
      const stem = basename(e.path, extname(e.path));
      throw new UserError(`${e.path}: no instance mask in ${masks} (expected ${stem}.png or ${stem}_seg.png)`);
    }
    todo.push({ path: e.path, mask, jobs: e.jobs });
  }
  opts.onStart?.(todo.length);
  const layers = meta.layers;
  const embedding = meta.embedding ?? 'ln';
  const rt = await VitRuntime.create(spec, { outputs: { [embedding]: layers }, imageSize, device: opts.device });
  const acc = new Map<string, ModePairing>();
  try {
    const layout = rt.layout;
    const T = layout.tokens, P = layout.patches, ps = layout.patchStart, Ls = layers.length;
    const batch = opts.batch ?? 4;
    const per = 3 * imageSize[0] * imageSize[1];
    for (let s = 0; s < todo.length; s += batch) {
      const chunk = todo.slice(s, s + batch);
      const pixels = new Float32Array(chunk.length * per);
      const objects: ReturnType<typeof instanceCoverage>[] = [];
      for (const [k, it] of chunk.entries()) {
        const img = await decodeImage(it.path);
        preprocessImage(img, pp, options, pixels, k * per);
        const m = await readInstanceMask(it.mask, { width: img.width, height: img.height, path: it.path });
        objects.push(instanceCoverage(m, pp, options, layout, opts.minPatches ?? 1));
      }
      const r = await rt.run(pixels, chunk.length);
      const X = r[embedding]!;
      const Q = new Float64Array(P), K = new Float64Array(P);
      chunk.forEach((it, k) => {
        for (const j of it.jobs) {
          const li = layers.indexOf(j.layer);
          const vec = vectors.get(`${j.layer}/${j.head}`);
          if (li < 0 || !vec) continue;
          const u = vec.u.subarray(j.mode * d, (j.mode + 1) * d), v = vec.v.subarray(j.mode * d, (j.mode + 1) * d);
          for (let p = 0; p < P; p++) {
            const o = ((k * Ls + li) * T + ps + p) * d;
            let q = 0, kk = 0;
            for (let i = 0; i < d; i++) {
              q += X[o + i] * u[i];
              kk += X[o + i] * v[i];
            }
            Q[p] = q;
            K[p] = kk;
          }
          const key = `${j.layer}/${j.head}/${j.mode}`;
          let a = acc.get(key);
          if (!a) acc.set(key, (a = { layer: j.layer, head: j.head, mode: j.mode, sigma: sigma.get(key) ?? 0, images: 0, same: 0, probability: null }));
          const qo = topObject(Q, objects[k]), ko = topObject(K, objects[k]);
          if (qo === null || ko === null) continue;
          a.images++;
          if (qo === ko) a.same++;
        }
      });
      opts.onProgress?.(s + chunk.length, todo.length);
    }
  } finally {
    await rt.close();
  }
  const modes = [...acc.values()].sort((a, b) => a.layer - b.layer || a.head - b.head || a.mode - b.mode);
  for (const m of modes) m.probability = m.images ? m.same / m.images : null;
  const curve = layerPairing(modes, layers, spec.blocks.length);
  ensureDir(opts.outDir);
  writeFileSync(
    join(opts.outDir, 'pairing.json'),
    JSON.stringify(
      {
        tool: 'qkscope',
        version: VERSION,
        command: 'pairing',
        created: new Date().toISOString(),
        run: opts.run ?? null,
        model: { id: spec.modelId, layers: spec.blocks.length, heads: spec.heads },
        index_base: 0,
        top,
        embedding,
        definition: PAIRING_DEFINITION,
        images: todo.length,
        skipped,
        layers: curve,
        modes,
      },
      null,
      1,
    ) + '\n',
  );
  writeFileSync(join(opts.outDir, 'pairing.csv'), toCsv([['layer', 'head', 'mode', 'sigma', 'images', 'same', 'probability'], ...modes.map((m) => [m.layer, m.head, m.mode, m.sigma, m.images, m.same, m.probability])]));
  if (opts.figures !== false && curve.length) await writeFigure(join(opts.outDir, 'pairing'), pairingFigure(spec.modelId, curve, top, todo.length));
  return { layers: curve, modes, images: todo.length, skipped };
}

export function pairingCommand(): Command {
  const cmd = new Command('pairing')
    .description("semantic pairing: how often a mode's top query object and top key object are the same object, per layer (paper figure 6)")
    .argument('<run>', 'a `qkscope scan` run directory (holds run.db)')
    .argument('<masks>', 'folder of instance masks: NAME.png (or NAME_seg.png) for image NAME.jpg; grey = instance id, or RGB (one colour per instance, ADE20K); 0 = unlabelled')
    .requiredOption('-o, --out <dir>', 'output directory')
    .option('--model <model>', "the scanned model (default: the input recorded in the run's database)")
    .addOption(new Option('--top <k>', "each mode's top-k images").default(5).argParser(positiveInt('--top')))
    .addOption(new Option('--min-patches <n>', 'ignore instances covering less than this many patches').default(1).argParser((v) => {
      const n = Number(v);
      if (!(n >= 0)) throw new UserError(`--min-patches ${v}: expected a number ≥ 0`);
      return n;
    }))
    .addOption(new Option('--batch <n>', 'images per forward pass').default(4).argParser(positiveInt('--batch')))
    .addOption(new Option('--device <device>', 'cpu, or cuda').default('cpu'))
    .option('--no-figures', 'skip pairing.svg/png')
    .addHelpText(
      'after',
      '\nWrites pairing.json (per layer: σ-weighted and plain probability; per mode: images, same), pairing.csv, pairing.svg/.png.\n' +
        '\nExample:\n  qkscope pairing runs/vit-b16 ADE20K/annotations/validation --out runs/vit-b16/pairing\n' +
        '  qkscope pairing runs/dino masks/ --out runs/dino-pairing --top 8 --model facebook/dino-vitb16\n',
    );
  addModelOptions(cmd);
  cmd.action(async (run: string, masks: string, flags: PairingFlags) => {
    const device = parseDevice(flags.device);
    const dbPath = join(run, 'run.db');
    if (!existsSync(dbPath)) throw new UserError(`${run}: no run.db; run \`qkscope scan <model> <images> --out ${run}\` first`);
    if (!existsSync(masks) || !statSync(masks).isDirectory()) throw new UserError(`${masks}: not a folder; give the folder of instance masks (NAME.png per image NAME.jpg)`);
    const { db, meta } = openScanRun(dbPath);
    try {
      const { spec, close } = await loadSpec(flags.model ?? meta.model.input, flags);
      try {
        const tty = process.stderr.isTTY === true;
        const bar = tty ? new cliProgress.SingleBar({ format: 'pairing |{bar}| {value}/{total} images', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic) : undefined;
        let res;
        try {
          res = await runPairing(spec, db, meta, masks, {
            outDir: flags.out,
            top: flags.top,
            minPatches: flags.minPatches,
            batch: flags.batch,
            device,
            figures: flags.figures,
            run,
            onStart: bar ? (t) => bar.start(t, 0) : undefined,
            onProgress: bar ? (d) => bar.update(d) : undefined,
          });
        } finally {
          bar?.stop();
        }
        const fmt = (v: number | null) => (v === null ? 'n/a' : v.toFixed(3));
        const f = res.layers[0], l = res.layers[res.layers.length - 1];
        process.stdout.write(
          `${spec.modelId}: ${res.images} images (${res.skipped.length} skipped); P(same object) σ-weighted ${fmt(f.weighted_probability)} (layer ${f.layer}) → ${fmt(l.weighted_probability)} (layer ${l.layer}); wrote ${flags.out}\n`,
        );
      } finally {
        await close();
      }
    } finally {
      db.close();
    }
  });
  return cmd;
}
