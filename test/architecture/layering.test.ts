/**
 * Imports follow the data flow. Every module under src/ belongs to a layer; a module may import
 * its own folder and any lower layer, never a higher one, and never a sibling of the same rank
 * (analysis and runtime do not know each other; the jobs combine them). Type-only imports count:
 * a type from above is a dependency on above. web/src may import only src/api-types.ts.
 *
 * The allowed direction, written once:
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { REPO_ROOT } from '../helpers/paths.js';

const LAYERS: string[][] = [
  ['errors.ts', 'version.ts', 'progress.ts', 'api-types.ts'], // shared words: errors, version, progress and API types
  ['site-types.ts'], // the static site's files (API payloads as stored by `export`) and the ONNX model card
  ['io', 'linalg'], // file formats (.npy, CSV, PNG, safe writes) | dense float64 kernels
  ['checkpoint'], // bytes → named tensors
  ['arch'], // tensors + config → VitSpec (and its token layout)
  ['images'], // decoding, preprocessing, image sources
  ['data'], // masks, datasets, labels (read through the model's preprocessing)
  ['analysis', 'runtime'], // maths on weights and activations | the forward pass
  ['store'], // run directories: the one writer, the readers, run.db
  ['report'], // pure data → SVG figures
  ['jobs'], // one file per command: run(options) → result, write(result, runDir)
  ['server'], // serve: routing, limits, caching over jobs and store readers
  ['cli'], // flag parsing over jobs (and the server)
  ['index.ts'], // the public library API
];

/** Imports that break the rule on purpose, each with its reason. Keep this short. */
const EXCEPTIONS: { from: string; to: string; why: string }[] = [];

function unitOf(rel: string): string {
  const parts = rel.split('/');
  return parts.length === 1 ? parts[0] : parts[0];
}

function rankOf(unit: string): number {
  const r = LAYERS.findIndex((l) => l.includes(unit));
  if (r < 0) throw new Error(`src/${unit}: not in any layer of test/architecture/layering.test.ts; add it to LAYERS`);
  return r;
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

function importsOf(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of src.matchAll(IMPORT_RE)) out.push(m[1] ?? m[2]);
  return out;
}

interface Violation {
  from: string;
  to: string;
  why: string;
}

function violations(): Violation[] {
  const srcDir = join(REPO_ROOT, 'src');
  const found: Violation[] = [];
  for (const file of walk(srcDir)) {
    const rel = relative(srcDir, file).split('\\').join('/');
    const unit = unitOf(rel);
    const rank = rankOf(unit);
    for (const spec of importsOf(file)) {
      const target = normalize(join(dirname(file), spec)).split('\\').join('/');
      const trel = relative(srcDir, target).split('\\').join('/').replace(/\.js$/, '.ts');
      if (trel.startsWith('..')) {
        found.push({ from: rel, to: trel, why: 'imports from outside src/' });
        continue;
      }
      const tunit = unitOf(trel);
      if (tunit === unit) continue;
      const trank = rankOf(tunit);
      if (trank > rank) found.push({ from: rel, to: trel, why: `goes up: ${unit} (rank ${rank}) → ${tunit} (rank ${trank})` });
      else if (trank === rank) found.push({ from: rel, to: trel, why: `goes sideways: ${unit} → ${tunit} (same rank)` });
    }
  }
  return found.filter((v) => !EXCEPTIONS.some((e) => e.from === v.from && e.to === v.to));
}

test('src/ imports follow the layers (checkpoint → arch → images → data → analysis|runtime → store → report → jobs → server → cli)', () => {
  const v = violations();
  if (process.env.QKSCOPE_PRINT_LAYERING) for (const x of v) console.log(`${x.from} → ${x.to}: ${x.why}`);
  assert.deepEqual(
    v.map((x) => `${x.from} → ${x.to}: ${x.why}`),
    [],
    'move the code to the layer it belongs to (see the LAYERS table in this test)',
  );
});

test('every exception is still needed', () => {
  const srcDir = join(REPO_ROOT, 'src');
  for (const e of EXCEPTIONS) {
    const uses = importsOf(join(srcDir, e.from)).some((s) => normalize(join(dirname(join(srcDir, e.from)), s)).endsWith(e.to.replace(/\.ts$/, '.js')));
    assert.ok(uses, `exception ${e.from} → ${e.to} is no longer used; remove it`);
  }
});

/**
 * What web/src may import from src/: the API types and a short list of browser-safe modules
 * (pure functions shared with the CLI, e.g. the overlay's map scaling; the exported site's
 * in-page model uses the preprocessing, the modes and the decomposition). Each may import at
 * run time only other modules of this list (so nothing from node: or sharp reaches the page).
 */
const WEB_IMPORTABLE = [
  'api-types.ts',
  'site-types.ts',
  'report/overlay.ts',
  'errors.ts',
  'arch/runnable.ts',
  'images/preprocess.ts',
  'images/resample.ts',
  'io/float16.ts',
  'analysis/contributions.ts',
  'analysis/decomposition.ts',
  'analysis/mode-maps.ts',
  'analysis/modes.ts',
  'analysis/types.ts',
  'linalg/dense.ts',
  'linalg/kernels.ts',
  'linalg/svd.ts',
  'linalg/wasm-asm.ts',
];

test('web/src imports from src/ only the shared API types and the browser-safe modules', () => {
  const webDir = join(REPO_ROOT, 'web', 'src');
  const bad: string[] = [];
  for (const file of walk(webDir)) {
    for (const spec of importsOf(file)) {
      const target = normalize(join(dirname(file), spec)).split('\\').join('/');
      const inSrc = relative(join(REPO_ROOT, 'src'), target).split('\\').join('/');
      if (!inSrc.startsWith('..') && !WEB_IMPORTABLE.includes(inSrc.replace(/\.js$/, '.ts'))) bad.push(`${relative(REPO_ROOT, file)} → src/${inSrc}`);
      // Views do not import the app shell back (main.ts wires the views).
      if (/\/views\//.test(file) && /\/main(\.js|\.ts)?$/.test(target)) bad.push(`${relative(REPO_ROOT, file)} → main`);
    }
  }
  assert.deepEqual(bad, []);
  for (const f of WEB_IMPORTABLE) {
    const src = readFileSync(join(REPO_ROOT, 'src', f), 'utf8');
    // Type-only imports vanish from the bundle; anything else would pull code into the page.
    const imports = [...src.matchAll(/^\s*(?:import|export)\s+(?!type\s)[^;]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]);
    const outside = imports.filter((s) => !s.startsWith('.') || !WEB_IMPORTABLE.includes(relative(join(REPO_ROOT, 'src'), normalize(join(REPO_ROOT, 'src', dirname(f), s))).split('\\').join('/').replace(/\.js$/, '.ts')));
    assert.deepEqual(outside, [], `src/${f} is imported by the web page: it may import only modules of WEB_IMPORTABLE`);
    assert.doesNotMatch(src, /\bprocess\.|\brequire\(|from ['"]node:/, `src/${f} must not use node APIs`);
  }
});

test('the layering rule itself catches an upward import', () => {
  // Guard against a regex that silently matches nothing.
  const imports = importsOf(join(REPO_ROOT, 'src', 'cli', 'main.ts'));
  assert.ok(imports.length > 0, 'the import parser found no imports in src/cli/main.ts');
  assert.ok(rankOf('cli') > rankOf('jobs') && rankOf('jobs') > rankOf('store') && rankOf('store') > rankOf('runtime'));
});
