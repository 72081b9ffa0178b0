import { existsSync, mkdtempSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

/** The repository root (the folder holding package.json), from compiled or source tests. */
export const REPO_ROOT: string = (() => {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json'))) {
    const up = dirname(d);
    if (up === d) throw new Error('package.json not found above ' + fileURLToPath(import.meta.url));
    d = up;
  }
  return d;
})();

/** ../shared beside the checkout (real model + photos); absent on a user's fresh clone. */
export const SHARED = resolve(REPO_ROOT, '..', 'shared');
export const REAL_VIT_TINY = join(SHARED, 'models', 'vit-tiny-patch16-224-augreg');
export const REAL_IMAGES = join(SHARED, 'images', 'imagenet-sample');
export const HAVE_SHARED = existsSync(join(REAL_VIT_TINY, 'model.safetensors'));

/** The compiled CLI entry. */
export const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'bin.js');

export function tempDir(prefix = 'qkscope-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
