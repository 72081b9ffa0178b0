/** Entry point: hash routing between the four linked views. */
import './style.css';
import { ApiError } from './api.js';
import { clear, errorBox, h, href, parseRoute, type Route } from './ui.js';
import { renderModels } from './views/models.js';
import { renderHead } from './views/head.js';
import { renderMode } from './views/mode.js';
import { renderImage } from './views/image.js';

export interface ViewContext {
  root: HTMLElement;
  /** False once the user navigated elsewhere: late replies must not draw. */
  alive: () => boolean;
  setCrumbs: (items: [string, string | null][]) => void;
}

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
  const ctx: ViewContext = { root: app, alive: () => gen === generation, setCrumbs };
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
    const msg = e instanceof ApiError || e instanceof Error ? e.message : String(e);
    app.append(errorBox(msg), h('p', null, h('a', { href: href({ view: 'models' }) }, '← back to the models')));
    current = null;
  }
  window.scrollTo(0, 0);
}

window.addEventListener('hashchange', () => void render());
void render();
