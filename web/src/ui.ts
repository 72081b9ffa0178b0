/** Tiny DOM helpers, number formats, routes and shared colours. */

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs | null = null, ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v as EventListener);
      else if (k === 'class') el.className = String(v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** Fixed decimals with a real minus sign. */
export function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–';
  const s = x.toFixed(digits);
  return s.startsWith('-') ? '−' + s.slice(1) : s;
}

export function fmtSigned(x: number, digits = 3): string {
  return (x > 0 ? '+' : '') + fmt(x, digits);
}

/** Scientific for tiny magnitudes. */
export function fmtSmall(x: number): string {
  if (!Number.isFinite(x)) return '–';
  if (x === 0) return '0';
  return Math.abs(x) < 1e-3 ? x.toExponential(1).replace('-', '−') : fmt(x, 4);
}

/**
 * One colour convention with the CLI's figures: positive red, negative blue (ColorBrewer RdBu
 * ends, as src/report/figures/common.ts and contributions.ts); the query map red, the key map cyan.
 */
export const COLORS = {
  positive: '#b2182b',
  negative: '#2166ac',
  band95: '#9aa5b1',
  band99: '#cfd6de',
  query: '#e3342f',
  key: '#17becf',
  neutral: '#4a5568',
  residual: '#7c3aed',
};

/** Colour of a signed value (a cosine, a contribution): red positive, blue negative. */
export const signColour = (v: number): string => (v > 0 ? COLORS.positive : COLORS.negative);

/** A diverging interpolator t ∈ [0, 1] → colour through three stops (negative, zero, positive). */
export function diverging(neg: string, mid: string, pos: string): (t: number) => string {
  const rgb = (hex: string) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const [a, m, b] = [rgb(neg), rgb(mid), rgb(pos)];
  return (t: number) => {
    const u = Math.min(1, Math.max(0, t));
    const [from, to, f] = u < 0.5 ? [a, m, u * 2] : [m, b, (u - 0.5) * 2];
    const c = from.map((x, i) => Math.round(x + (to[i] - x) * f));
    return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
  };
}

/** Signed query maps: blue < 0 < red (RdBu, red positive, as the CLI). */
export const QUERY_SCALE = diverging('#2166ac', '#f7f7f7', '#b2182b');
/** Signed key maps: purple < 0 < cyan (the key map is cyan everywhere). */
export const KEY_SCALE = diverging('#762a83', '#f7f7f7', '#0f9fb2');

/** Okabe–Ito, colour-blind safe, for one colour per model. */
export const MODEL_COLORS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'];

// ---- routes -----------------------------------------------------------------------------------

export type Route =
  | { view: 'models' }
  | { view: 'head'; run: string; layer: number; head: number }
  | { view: 'mode'; run: string; layer: number; head: number; mode: number }
  | { view: 'image'; run: string; layer: number; head: number; mode: number; img?: string; patch?: number; sign: 1 | -1 };

const e = encodeURIComponent;

export function href(r: Route): string {
  switch (r.view) {
    case 'models':
      return '#/';
    case 'head':
      return `#/run/${e(r.run)}/head/${r.layer}/${r.head}`;
    case 'mode':
      return `#/run/${e(r.run)}/mode/${r.layer}/${r.head}/${r.mode}`;
    case 'image': {
      const q = new URLSearchParams({ layer: String(r.layer), head: String(r.head), mode: String(r.mode) });
      if (r.sign < 0) q.set('sign', 'neg');
      if (r.img) q.set('img', r.img);
      if (r.patch !== undefined) q.set('patch', String(r.patch));
      return `#/run/${e(r.run)}/image?${q}`;
    }
  }
}

export function parseRoute(hash: string): Route {
  const [path, qs] = hash.replace(/^#/, '').split('?');
  const segs = path.split('/').filter(Boolean);
  const q = new URLSearchParams(qs ?? '');
  const num = (s: string | null | undefined, dflt = 0) => (s !== null && s !== undefined && /^\d+$/.test(s) ? Number(s) : dflt);
  if (segs[0] === 'run' && segs.length >= 3) {
    const run = decodeURIComponent(segs[1]);
    if (segs[2] === 'head') return { view: 'head', run, layer: num(segs[3]), head: num(segs[4]) };
    if (segs[2] === 'mode') return { view: 'mode', run, layer: num(segs[3]), head: num(segs[4]), mode: num(segs[5]) };
    if (segs[2] === 'image')
      return {
        view: 'image',
        run,
        layer: num(q.get('layer')),
        head: num(q.get('head')),
        mode: num(q.get('mode')),
        img: q.get('img') ?? undefined,
        patch: q.has('patch') ? num(q.get('patch')) : undefined,
        sign: q.get('sign') === 'neg' ? -1 : 1,
      };
  }
  return { view: 'models' };
}

export function go(r: Route, replace = false): void {
  const target = href(r);
  if (replace) history.replaceState(null, '', target);
  else location.hash = target;
}

export function errorBox(message: string): HTMLElement {
  return h('div', { class: 'error', role: 'alert' }, message);
}

/** A number pair that must not wrap inside ("500×375"). */
export function nowrap(text: string): HTMLElement {
  return h('span', { class: 'nowrap' }, text);
}

/** A statistic box (label, big value, small line). */
export function statBox(label: string, value: string, sub: string, id?: string): HTMLElement {
  return h('div', { class: 'stat', 'data-testid': id ?? null }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), h('div', { class: 'sub' }, sub));
}

/** Subscript digits: 0 → ₀. */
export function sub(n: number): string {
  return String(n)
    .split('')
    .map((c) => '₀₁₂₃₄₅₆₇₈₉'[Number(c)] ?? c)
    .join('');
}

export function card(title: string | Node, ...body: (Child | Child[])[]): HTMLElement {
  return h('section', { class: 'card' }, h('h2', null, title), ...body);
}

/** Sets a card's heading: a short title and, below it, the details (long headings do not wrap into the numbers). */
export function setHeading(panel: HTMLElement, title: string, detail?: string): void {
  const h2 = panel.querySelector('h2')!;
  clear(h2);
  h2.append(title);
  if (detail) h2.append(h('span', { class: 'detail' }, detail));
}

export function note(text: string | Node): HTMLElement {
  return h('p', { class: 'note' }, text);
}

/** Index-based click handling on a Plot mark's elements (Plot binds each element to its index). */
export function onMarkClick(root: Element, selector: string, fn: (index: number, el: Element) => void, decorate?: (index: number, el: Element) => void): void {
  root.querySelectorAll(selector).forEach((el) => {
    const i = (el as unknown as { __data__?: number }).__data__;
    if (typeof i !== 'number') return;
    (el as HTMLElement).style.cursor = 'pointer';
    decorate?.(i, el);
    el.addEventListener('click', () => fn(i, el));
  });
}
