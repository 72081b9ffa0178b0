/**
 * Dataset layouts of the token-level analyses.
 *
 * Objects (paper figure 2), either
 *   - a folder: `NAME.jpg` (any image extension) with `NAME.target.png` and
 *     `NAME.distractor.png` beside it; files named `*.target.*` / `*.distractor.*` are masks,
 *     everything else with an image extension is an image that needs both masks; or
 *   - a JSON manifest: `{"images": [{"image": "a.jpg", "target": "masks/a_t.png",
 *     "distractor": "masks/a_d.png"}, ...]}` (or the bare array), paths relative to the
 *     manifest's folder.
 *
 * Pairing (paper figure 6): a folder of instance masks, `NAME.png`, `NAME_seg.png` (ADE20K) or
 * `NAME.instances.png` for image NAME.jpg (`instanceMaskPath`).
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { IMAGE_EXTENSIONS } from '../images/sources.js';

export interface ObjectsItem {
  name: string;
  image: string;
  target: string;
  distractor: string;
}

const MASK_NAME = /\.(target|distractor|instances)\.[^.]+$/i;

export function objectsDataset(input: string): ObjectsItem[] {
  let st;
  try {
    st = statSync(input);
  } catch {
    throw new UserError(`${input}: no such file or folder; give a folder of NAME.jpg + NAME.target.png + NAME.distractor.png, or a JSON manifest`);
  }
  const items: ObjectsItem[] = [];
  if (st.isDirectory()) {
    const files = readdirSync(input).sort();
    for (const f of files) {
      if (!IMAGE_EXTENSIONS.includes(extname(f).toLowerCase()) || MASK_NAME.test(f)) continue;
      const stem = f.slice(0, f.length - extname(f).length);
      const target = join(input, `${stem}.target.png`);
      const distractor = join(input, `${stem}.distractor.png`);
      for (const [p, what] of [[target, 'target'], [distractor, 'distractor']] as const) {
        if (!existsSync(p)) throw new UserError(`${join(input, f)}: missing ${what} mask ${p} (each image NAME.ext needs NAME.target.png and NAME.distractor.png beside it)`);
      }
      items.push({ name: stem, image: join(input, f), target, distractor });
    }
    if (items.length === 0) throw new UserError(`${input}: no images in this folder (expected NAME.jpg with NAME.target.png and NAME.distractor.png)`);
    return items;
  }
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(input, 'utf8'));
  } catch (e) {
    throw new UserError(`${input}: not a folder nor a valid JSON manifest (${(e as Error).message.split('\n')[0]})`);
  }
  const list = Array.isArray(json) ? json : (json as { images?: unknown }).images;
  if (!Array.isArray(list) || list.length === 0) throw new UserError(`${input}: manifest needs {"images": [{"image": ..., "target": ..., "distractor": ...}, ...]} with at least one entry`);
  const base = dirname(resolve(input));
  list.forEach((e, k) => {
    const o = e as Record<string, unknown>;
    for (const key of ['image', 'target', 'distractor']) {
      if (typeof o?.[key] !== 'string') throw new UserError(`${input}: entry ${k} has no "${key}" path (each entry needs image, target and distractor)`);
    }
    const abs = (p: string) => resolve(base, p);
    const item = { name: basename(o.image as string, extname(o.image as string)), image: abs(o.image as string), target: abs(o.target as string), distractor: abs(o.distractor as string) };
    for (const key of ['image', 'target', 'distractor'] as const) {
      if (!existsSync(item[key])) throw new UserError(`${input}: entry ${k}: ${key} ${item[key]} does not exist`);
    }
    items.push(item);
  });
  return items;
}

/** The instance mask of image `image` (a path or a member name) in folder `masks`, or null. */
export function instanceMaskPath(masks: string, image: string): string | null {
  const stem = basename(image, extname(image));
  for (const c of [`${stem}.png`, `${stem}_seg.png`, `${stem}.instances.png`]) {
    const p = join(masks, c);
    if (existsSync(p)) return p;
  }
  return null;
}
