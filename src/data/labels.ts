/**
 * Ground-truth classes for accuracy, in one of two forms:
 *
 * - `--labels FILE.csv`: records `file,class_index` (a header row is allowed; ImageNet's
 *   labels.csv style). `file` is matched against each image's path as given, its absolute
 *   path, or its file name. Images without a record are unlabelled.
 * - `--labels folders`: the class is the name of each image's parent folder (ImageFolder
 *   layout: `images/<class>/x.jpg`; pass `images` and its class folders are expanded). Folder
 *   names are mapped to indices by `--label-map FILE`: a text file with one class name per line
 *   (index = line number, 0-based; e.g. the 1000 ImageNet WordNet ids n01440764 ...) or a JSON
 *   array of names or object {name: index}. Without a map the folder names must be integers.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { expandImagePaths, imagesIn, statInput } from '../images/sources.js';

/**
 * Like `expandImagePaths`, but a folder that holds no images and has subfolders is treated as
 * an ImageFolder root: the images of each subfolder (sorted) are listed.
 */
export function expandClassFolders(inputs: string[]): string[] {
  const out: string[] = [];
  for (const p of inputs) {
    if (statInput(p).isDirectory()) {
      const entries = readdirSync(p).sort();
      const subdirs = entries.filter((f) => statSync(join(p, f)).isDirectory());
      if (imagesIn(p).length === 0 && subdirs.length) {
        for (const s of subdirs) out.push(...imagesIn(join(p, s)));
        continue;
      }
    }
    out.push(...expandImagePaths([p]));
  }
  if (out.length === 0) throw new UserError(`${inputs.join(' ')}: no images found`);
  return out;
}

function readText(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new UserError(`${flag} ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? e}); check the path`);
  }
}

/** Class index per image from a `file,class_index` CSV (−1: no record). */
export function labelsFromCsv(path: string, images: string[]): Int32Array {
  const map = new Map<string, number>();
  const lines = readText(path, '--labels').split(/\r?\n/);
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    const cut = line.lastIndexOf(',');
    const file = line.slice(0, cut).trim().replace(/^"(.*)"$/, '$1');
    const cls = line.slice(cut + 1).trim();
    if (cut < 0 || !/^\d+$/.test(cls)) {
      if (i === 0) return; // header
      throw new UserError(`--labels ${path}: line ${i + 1} "${line}" is not "file,class_index" (class index a whole number)`);
    }
    map.set(file, Number(cls));
  });
  const out = new Int32Array(images.length).fill(-1);
  let found = 0;
  images.forEach((p, i) => {
    const v = map.get(p) ?? map.get(resolve(p)) ?? map.get(basename(p)) ?? map.get(basename(p, extname(p)));
    if (v !== undefined) {
      out[i] = v;
      found++;
    }
  });
  if (found === 0) throw new UserError(`--labels ${path}: none of the ${images.length} images has a record (the file column must be the image's path or file name)`);
  return out;
}

/** Class index per image from its parent folder's name, through `labelMap` if given. */
export function labelsFromFolders(images: string[], labelMap?: string): Int32Array {
  let index: Map<string, number> | null = null;
  if (labelMap) {
    const text = readText(labelMap, '--label-map');
    index = new Map();
    if (/^\s*[[{]/.test(text)) {
      let j: unknown;
      try {
        j = JSON.parse(text);
      } catch (e) {
        throw new UserError(`--label-map ${labelMap}: not valid JSON (${(e as Error).message}); give a JSON array of class names, an object {name: index}, or a text file with one name per line`);
      }
      if (Array.isArray(j)) j.forEach((name, i) => index!.set(String(name), i));
      else for (const [k, v] of Object.entries(j as Record<string, unknown>)) index.set(k, Number(v));
    } else {
      text.split(/\r?\n/).forEach((line, i) => {
        const name = line.trim().split(/[\s,]+/)[0];
        if (name) index!.set(name, i);
      });
    }
  }
  return Int32Array.from(images, (p) => {
    const cls = basename(dirname(resolve(p)));
    if (index) {
      const v = index.get(cls);
      if (v === undefined) throw new UserError(`--label-map ${labelMap}: no class named "${cls}" (folder of ${p}); add it to the map or fix the folder name`);
      return v;
    }
    if (!/^\d+$/.test(cls)) throw new UserError(`--labels folders: folder "${cls}" (of ${p}) is not a class index; give --label-map FILE mapping folder names to indices`);
    return Number(cls);
  });
}
