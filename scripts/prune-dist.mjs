// Removes compiled files under dist/{src,test,bench} whose TypeScript source is gone (a moved or
// deleted module would otherwise still run as a test, or ship in the package). tsc never deletes.
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
let removed = 0;
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      walk(p);
      if (readdirSync(p).length === 0) rmSync(p, { recursive: true });
      continue;
    }
    const m = /^(.*)\.(js|d\.ts|js\.map|d\.ts\.map)$/.exec(name);
    if (!m) continue;
    const src = join(root, relative(join(root, 'dist'), dir), `${m[1]}.ts`);
    if (!existsSync(src)) {
      rmSync(p);
      removed++;
    }
  }
}
for (const top of ['src', 'test', 'bench']) if (existsSync(join(root, 'dist', top))) walk(join(root, 'dist', top));
if (removed) console.log(`prune-dist: removed ${removed} stale compiled file(s)`);
