import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { addModelOptions, positiveInt, type ModelFlags } from './model-options.js';
import { UserError } from '../errors.js';
import { decodeImage } from '../images/decode.js';
import { preprocessFor, preprocessImage } from '../images/preprocess.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { parseDevice, type Device } from '../runtime/device.js';
import { objectsDataset, type ObjectsItem } from '../data/datasets.js';
import { argmax, downscaleMask, readBinaryMask } from '../data/masks.js';
import { ObjectShareSums, rowShares } from '../analysis/objects.js';
import { objectsFigure } from '../report/figures/objects.js';
import { writeFigure } from '../report/svd-figures.js';
import { toCsv } from '../io/csv.js';
import { VERSION } from '../version.js';
import type { VitSpec } from '../arch/spec.js';
import { ensureDir } from '../io/fs.js';
import { loadSpec } from '../arch/load.js';

interface ObjectsFlags extends ModelFlags {
  out: string;
  batch: number;
  device: string;
  threads?: number;
  figures: boolean;
}

export const OBJECTS_DEFINITION =
  'Masks are resized and cropped like the image; down-scaled mask = fraction of each patch inside the mask (area-weighted, no threshold). ' +
  'Query = the patch at the maximum of each down-scaled mask (target, distractor; first in raster order on ties). Its attention row over patch tokens is renormalised to sum to 1; ' +
  'shares = Σ_p a_p t_p (target), Σ_p a_p d_p (distractor), Σ_p a_p max(0, 1 − t_p − d_p) (background). same object = target share of the target query and distractor share of the distractor query (averaged), other object = the crossed shares.';

export interface ObjectsLayer {
  layer: number;
  depth: number;
  same_object: number;
  other_object: number;
  background: number;
  by_query: { target: { target: number; distractor: number; background: number }; distractor: { target: number; distractor: number; background: number } };
  heads: { head: number; same_object: number; other_object: number; background: number }[];
}

export async function runObjects(
  spec: VitSpec,
  items: ObjectsItem[],
  opts: { outDir: string; batch?: number; device?: Device; threads?: number; figures?: boolean; input?: string; onProgress?: (done: number, total: number) => void },
): Promise<{ layers: ObjectsLayer[]; images: number }> {
  const { pp, options } = preprocessFor(spec);
  const imageSize: [number, number] = [...pp.crop];
  const rt = await VitRuntime.create(spec, { outputs: { attention: 'all' }, imageSize, device: opts.device, threads: opts.threads });
  const L = spec.blocks.length, H = spec.heads;
  const layout = rt.layout;
  const T = layout.tokens, ps = layout.patchStart;
  const sums = new ObjectShareSums(L, H);
  const perImage: (string | number)[][] = [['image', 'layer', 'head', 'query', 'query_patch', 'target', 'distractor', 'background']];
  try {
    const batch = opts.batch ?? 4;
    for (let s = 0; s < items.length; s += batch) {
      const chunk = items.slice(s, s + batch);
      const n = chunk.length;
      const per = 3 * imageSize[0] * imageSize[1];
      const pixels = new Float32Array(n * per);
      const masks: { t: Float64Array; d: Float64Array; qt: number; qd: number }[] = [];
      for (const [k, it] of chunk.entries()) {
        const img = await decodeImage(it.image);
        const ref = { width: img.width, height: img.height, path: it.image };
        const tm = await readBinaryMask(it.target, 'target mask', ref);
        const dm = await readBinaryMask(it.distractor, 'distractor mask', ref);
        let overlap = 0;
        for (let p = 0; p < tm.data.length; p++) if (tm.data[p] && dm.data[p]) overlap++;
        if (overlap) throw new UserError(`${it.distractor}: overlaps the target mask ${it.target} in ${overlap} pixels; target and distractor must be disjoint`);
        preprocessImage(img, pp, options, pixels, k * per);
        const t = downscaleMask(tm, pp, options, layout);
        const d = downscaleMask(dm, pp, options, layout);
        if (!(t[argmax(t)] > 0)) throw new UserError(`${it.target}: the target mask falls outside the model's crop of ${it.image}`);
        if (!(d[argmax(d)] > 0)) throw new UserError(`${it.distractor}: the distractor mask falls outside the model's crop of ${it.image}`);
        masks.push({ t, d, qt: argmax(t), qd: argmax(d) });
      }
      const r = await rt.run(pixels, n);
      const A = r.attention!;
      for (let i = 0; i < n; i++) {
        const m = masks[i];
        for (let l = 0; l < L; l++)
          for (let h = 0; h < H; h++) {
            const base = ((i * L + l) * H + h) * T * T;
            for (const [qk, q] of [[0, m.qt], [1, m.qd]] as const) {
              const tok = ps + q;
              const sh = rowShares(A.subarray(base + tok * T, base + (tok + 1) * T), ps, m.t, m.d);
              sums.add(l, h, qk, sh);
              perImage.push([chunk[i].name, l, h, qk === 0 ? 'target' : 'distractor', q, sh.target, sh.distractor, sh.background]);
            }
          }
        sums.n++;
      }
      opts.onProgress?.(s + n, items.length);
    }
  } finally {
    await rt.close();
  }
  const layers: ObjectsLayer[] = [];
  for (let l = 0; l < L; l++) {
    const heads = Array.from({ length: H }, (_, h) => {
      const c = sums.categories(l, h);
      return { head: h, same_object: c.same, other_object: c.other, background: c.background };
    });
    const mean = (f: (h: number) => number) => Array.from({ length: H }, (_, h) => f(h)).reduce((a, b) => a + b, 0) / H;
    const q = (k: 0 | 1) => ({
      target: mean((h) => sums.mean(l, h, k).target),
      distractor: mean((h) => sums.mean(l, h, k).distractor),
      background: mean((h) => sums.mean(l, h, k).background),
    });
    layers.push({
      layer: l,
      depth: L > 1 ? l / (L - 1) : 0,
      same_object: mean((h) => heads[h].same_object),
      other_object: mean((h) => heads[h].other_object),
      background: mean((h) => heads[h].background),
      by_query: { target: q(0), distractor: q(1) },
      heads,
    });
  }
  ensureDir(opts.outDir);
  writeFileSync(
    join(opts.outDir, 'objects.json'),
    JSON.stringify(
      {
        tool: 'qkscope',
        version: VERSION,
        command: 'objects',
        created: new Date().toISOString(),
        model: { id: spec.modelId, input: opts.input ?? null, layers: L, heads: H },
        index_base: 0,
        definition: OBJECTS_DEFINITION,
        images: items.length,
        patch_grid: layout.grid,
        layers,
      },
      null,
      1,
    ) + '\n',
  );
  writeFileSync(
    join(opts.outDir, 'objects.csv'),
    toCsv([
      ['layer', 'depth', 'head', 'same_object', 'other_object', 'background'],
      ...layers.flatMap((x) => [[x.layer, x.depth, 'mean', x.same_object, x.other_object, x.background], ...x.heads.map((h) => [x.layer, x.depth, h.head, h.same_object, h.other_object, h.background])]),
    ]),
  );
  writeFileSync(join(opts.outDir, 'objects_per_image.csv'), toCsv(perImage));
  if (opts.figures !== false) {
    await writeFigure(
      join(opts.outDir, 'objects'),
      objectsFigure(spec.modelId, items.length, layers.map((x) => x.depth), layers.map((x) => x.same_object), layers.map((x) => x.other_object), layers.map((x) => x.background)),
    );
  }
  return { layers, images: items.length };
}

export function objectsCommand(): Command {
  const cmd = new Command('objects')
    .description('same-object / other-object / background attention of object tokens, per layer (paper figure 2)')
    .argument('<model>', 'model directory (HF or timm layout), checkpoint file, or Hugging Face id org/name[@rev]')
    .argument('<dataset>', 'folder of NAME.jpg + NAME.target.png + NAME.distractor.png, or a JSON manifest')
    .requiredOption('-o, --out <dir>', 'output directory')
    .addOption(new Option('--batch <n>', 'images per forward pass').default(4).argParser(positiveInt('--batch')))
    .addOption(new Option('--device <device>', 'cpu, or cuda').default('cpu'))
    .addOption(new Option('--threads <n>', 'CPU threads per operator').argParser(positiveInt('--threads')))
    .option('--no-figures', 'skip objects.svg/png')
    .addHelpText(
      'after',
      '\nDataset: a folder with NAME.jpg, NAME.target.png, NAME.distractor.png (masks: grey PNG of the image size, 0 = outside, 255 = inside),\n' +
        'or a manifest {"images": [{"image": "a.jpg", "target": "a_t.png", "distractor": "a_d.png"}]} (paths relative to it).\n' +
        'Writes objects.json, objects.csv (per layer and head), objects_per_image.csv, objects.svg/.png.\n' +
        '\nExample:\n  qkscope objects google/vit-base-patch16-224 ./odd-one-out --out runs/objects\n' +
        '  qkscope objects facebook/dino-vits16 dataset.json --out runs/dino-objects --batch 8\n',
    );
  addModelOptions(cmd);
  cmd.action(async (model: string, dataset: string, flags: ObjectsFlags) => {
    const device = parseDevice(flags.device);
    const items = objectsDataset(dataset);
    const { spec, close } = await loadSpec(model, flags);
    try {
      const tty = process.stderr.isTTY === true;
      const bar = tty
        ? new cliProgress.SingleBar({ format: 'objects |{bar}| {value}/{total} images | {eta_formatted} left', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
        : undefined;
      bar?.start(items.length, 0);
      let res;
      try {
        res = await runObjects(spec, items, { outDir: flags.out, batch: flags.batch, device, threads: flags.threads, figures: flags.figures, input: model, onProgress: bar ? (d) => bar.update(d) : undefined });
      } finally {
        bar?.stop();
      }
      const f = res.layers[0], l = res.layers[res.layers.length - 1];
      process.stdout.write(
        `${spec.modelId}: ${res.images} images; same-object share ${f.same_object.toFixed(3)} (layer 0) → ${l.same_object.toFixed(3)} (layer ${l.layer}); ` +
          `background ${f.background.toFixed(3)} → ${l.background.toFixed(3)}; wrote ${flags.out}\n`,
      );
    } finally {
      await close();
    }
  });
  return cmd;
}
