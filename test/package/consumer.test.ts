/**
 * qkscope as a consumer installs it: `npm pack` of this checkout, the tarball unpacked into a
 * fresh project's node_modules/qkscope, and `import('qkscope')` there. The package's
 * dependencies are linked from this checkout's node_modules (no network, no native rebuild);
 * everything of qkscope itself comes from the tarball, so a missing file, a wrong `exports`,
 * `main` or `types` fails here. The README's "Library" example runs as written, and a
 * TypeScript consumer type-checks against the published declarations.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { REPO_ROOT } from '../helpers/paths.js';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { writeImage } from '../scan/helpers.js';
import { loadSpec } from '../../src/arch/load.js';
import { runSvd } from '../../src/jobs/svd.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-consumer-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

interface Pkg {
  dependencies: Record<string, string>;
  files: string[];
  exports: Record<string, unknown>;
}

function packInto(project: string): string[] {
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', root], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const info = JSON.parse(out.slice(out.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  const tgz = join(root, info[0].filename);
  const dest = join(project, 'node_modules', 'qkscope');
  mkdirSync(dest, { recursive: true });
  execFileSync('tar', ['-xzf', tgz, '-C', dest, '--strip-components=1']);
  // Dependencies: linked from this checkout (what `npm install` would have fetched).
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as Pkg;
  for (const dep of Object.keys(pkg.dependencies)) {
    const at = join(project, 'node_modules', dep);
    mkdirSync(dirname(at), { recursive: true });
    symlinkSync(join(REPO_ROOT, 'node_modules', dep), at, 'dir');
  }
  return info[0].files.map((f) => f.path);
}

test('npm pack: the tarball holds the library, the CLI and the explorer, not the tests', () => {
  const project = join(root, 'files');
  const files = packInto(project);
  for (const f of ['package.json', 'README.md', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/bin.js', 'docs/method.md']) assert.ok(files.includes(f), `${f} is in the package`);
  assert.ok(files.some((f) => f.startsWith('dist/web/')), 'the explorer front-end is in the package');
  assert.ok(!files.some((f) => f.startsWith('dist/test/') || f.startsWith('dist/bench/') || f.startsWith('test/') || f.startsWith('src/')), 'no tests, benches or sources');
  assert.ok(!files.some((f) => /(pickle|torch|zip)-write/.test(f)), 'the fixture writers stay in test/');
});

test('import("qkscope") in a fresh project: the modes analysis on a fixture; the README example runs as written', async () => {
  const project = join(root, 'app');
  packInto(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'module', private: true }));
  const model = writeModel(join(root, 'vit'), 'hf-vit-classifier', makeLayoutWeights('hf-vit-classifier', { d: 16, heads: 2, layers: 3, seed: 9 })).path;
  await writeImage(join(root, 'a.png'), 5, 20, 16);

  // The consumer's answer equals this checkout's.
  writeFileSync(
    join(project, 'check.mjs'),
    `import * as q from 'qkscope';\n` +
      `const { spec, close } = await q.loadSpec(process.argv[2]);\n` +
      `const r = await q.runSvd(spec, { vectors: 'float64' });\n` +
      `await close();\n` +
      `console.log(JSON.stringify({ version: q.VERSION, exports: Object.keys(q).length, dims: r.stats.dims, sigma: Array.from(r.sigma), cosine: Array.from(r.cosine) }));\n`,
  );
  const got = JSON.parse(execFileSync(process.execPath, ['check.mjs', model], { cwd: project, encoding: 'utf8' }));
  const { spec, close } = await loadSpec(model);
  const want = await runSvd(spec, { vectors: 'float64' });
  await close();
  assert.deepEqual(got.dims, want.stats.dims);
  assert.deepEqual(got.sigma, Array.from(want.sigma));
  assert.deepEqual(got.cosine, Array.from(want.cosine));
  assert.equal(got.version, JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version);
  assert.ok(got.exports > 40);

  // The README example: the same text as test/package/library-example.mjs, run in the consumer.
  const example = readFileSync(join(REPO_ROOT, 'test', 'package', 'library-example.mjs'), 'utf8');
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const block = /## Library[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block, 'README has a "## Library" section with a ```js block');
  assert.equal(block!.trim(), example.split('\n').slice(1).join('\n').trim(), 'README example = test/package/library-example.mjs (without its first comment line)');
  writeFileSync(join(project, 'example.mjs'), example);
  const r = spawnSync(process.execPath, ['example.mjs', model, join(root, 'a.png')], { cwd: project, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /layer 0 score -?\d\.\d{3}, layer 2/);
  assert.match(r.stdout, /U 3x2x16x8/);
  assert.match(r.stdout, /embedded 1 image\(s\)/);
  assert.ok(existsSync(join(project, 'runs', 'lib-example', 'my-heatmap.png')));
  assert.ok(readdirSync(join(project, 'runs', 'lib-example')).includes('summary.json'));
});

test('a TypeScript consumer type-checks against the published declarations', () => {
  const project = join(root, 'ts');
  packInto(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'ts-app', version: '1.0.0', type: 'module', private: true }));
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: [] }, files: ['main.ts'] }),
  );
  writeFileSync(
    join(project, 'main.ts'),
    `import { loadSpec, runSvd, embedImages, type SvdResult, type EmbedByLayer, type VitSpec } from 'qkscope';\n` +
      `export async function f(path: string): Promise<[SvdResult, EmbedByLayer]> {\n` +
      `  const { spec, close }: { spec: VitSpec; close: () => Promise<void> } = await loadSpec(path);\n` +
      `  const r = await runSvd(spec, { threads: 1 });\n` +
      `  const s: Float64Array = r.sigma;\n` +
      `  const x = await embedImages(spec, ['a.png'], { layers: [0] });\n` +
      `  const ln: Float32Array = x.ln[0];\n` +
      `  void s; void ln; await close();\n` +
      `  return [r, x];\n` +
      `}\n` +
      `// @ts-expect-error: runSvd takes a spec, not a path\n` +
      `void runSvd('google/vit-base-patch16-224');\n`,
  );
  const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: project, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
