/** Entry point: hash routing between the four linked views, over one data source. */
import './style.css';
import type { ViewContext } from './context.js';
import { errorText, serveSource, type DataSource } from './data.js';
import { clear, errorBox, h, href, parseRoute, type Route } from './ui.js';
import { renderModels } from './views/models.js';
import { renderHead } from './views/head.js';
import { renderMode } from './views/mode.js';
import { renderImage } from './views/image.js';

// A static export installs its own source before this module runs (static.ts); serve uses the API.
const data: DataSource = (globalThis as { qkscopeSource?: DataSource }).qkscopeSource ?? serveSource();
const app = document.getElementById('app')!;
const crumbs = document.getElementById('crumbs')!;
let generation = 0;
let lastKey = '';
let current: { route: Route; update?: (r: Route) => boolean } | null = null;

function setCrumbs(items: [string, string | null][]): void {
  clear(crumbs);
  items.forEach(([label, link], i) => {
    if (i > 0) crumbs.append(h('span', { class: 'sep', 'aria-hidden': 'true' }, '›'));
    crumbs.append(link && i < items.length - 1 ? h('a', { href: link }, label) : h('span', { class: 'here' }, label));
  });
}

/** The breadcrumb of a route before its data arrives (so an error page never shows the previous route's). */
function routeCrumbs(r: Route): [string, string | null][] {
  const models: [string, string | null] = ['Models', href({ view: 'models' })];
  if (r.view === 'models') return [['Models', null]];
  const run: [string, string | null] = [r.run, href({ view: 'head', run: r.run, layer: 0, head: 0 })];
  const lh: [string, string | null] = [`L${r.layer} H${r.head}`, href({ view: 'head', run: r.run, layer: r.layer, head: r.head })];
  if (r.view === 'head') return [models, run, [lh[0], null]];
  if (r.view === 'mode') return [models, run, lh, [`Mode ${r.mode}`, null]];
  return [models, run, lh, [`Mode ${r.mode}`, href({ view: 'mode', run: r.run, layer: r.layer, head: r.head, mode: r.mode })], ['Image', null]];
}

/** Route identity that requires a fresh render (the Image view updates itself in place). */
function viewKey(r: Route): string {
  return r.view === 'image' ? `image|${r.run}` : JSON.stringify(r);
}

async function render(): Promise<void> {
  const route = parseRoute(location.hash);
  const key = viewKey(route);
  if (current && key === lastKey && current.update?.(route)) return;
  lastKey = key;
  const gen = ++generation;
  const ctx: ViewContext = { root: app, alive: () => gen === generation, setCrumbs, data };
  setCrumbs(routeCrumbs(route));
  clear(app);
  app.dataset.view = route.view;
  app.append(h('p', { class: 'loading' }, 'Loading…'));
  try {
    let update: ((r: Route) => boolean) | undefined;
    if (route.view === 'models') await renderModels(ctx);
    else if (route.view === 'head') await renderHead(ctx, route);
    else if (route.view === 'mode') await renderMode(ctx, route);
    else update = await renderImage(ctx, route);
    current = { route, update };
  } catch (e) {
    if (!ctx.alive()) return;
    clear(app);
    setCrumbs([...routeCrumbs(route).slice(0, -1), ['Error', null]]);
    app.append(errorBox(errorText(e)), h('p', null, h('a', { href: href({ view: 'models' }) }, '← back to the models')));
    current = null;
  }
  window.scrollTo(0, 0);
}

window.addEventListener('hashchange', () => void render());
void render();
