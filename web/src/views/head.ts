/** Head view: singular spectrum, per-mode cosines with the chance band, key salience, modes. */
import * as Plot from '@observablehq/plot';
import type { ViewContext } from '../context.js';
import type { HeadDetail, ModeRow } from '../data.js';
import { COLORS, card, clear, fmt, fmtSigned, h, href, note, onMarkClick, signColour, statBox } from '../ui.js';

type HeadRoute = { run: string; layer: number; head: number };

export async function renderHead(ctx: ViewContext, r: HeadRoute): Promise<void> {
  const d = await ctx.data.head(r.run, r.layer, r.head);
  if (!ctx.alive()) return;
  ctx.setCrumbs([
    ['Models', href({ view: 'models' })],
    [d.model, href({ view: 'head', run: r.run, layer: 0, head: 0 })],
    [`L${d.layer} H${d.head}`, null],
  ]);
  clear(ctx.root);
  const L = d.dims.layers;
  const H = d.dims.heads;
  const flat = d.layer * H + d.head;
  const at = (i: number) => ({ view: 'head' as const, run: r.run, layer: Math.floor(i / H), head: i % H });
  const layerSel = h('select', { 'aria-label': 'layer', id: 'layer' }, Array.from({ length: L }, (_, l) => h('option', { value: l }, `Layer ${l}`)));
  const headSel = h('select', { 'aria-label': 'head', id: 'head' }, Array.from({ length: H }, (_, x) => h('option', { value: x }, `Head ${x}`)));
  layerSel.value = String(d.layer);
  headSel.value = String(d.head);
  const jump = () => (location.hash = href({ view: 'head', run: r.run, layer: Number(layerSel.value), head: Number(headSel.value) }));
  layerSel.addEventListener('change', jump);
  headSel.addEventListener('change', jump);
  const inBand = d.weighted_cosine >= d.weighted_band95.lo && d.weighted_cosine <= d.weighted_band95.hi;

  ctx.root.append(
    h(
      'div',
      { class: 'page-title' },
      h('h1', null, `Layer ${d.layer} · Head ${d.head}`, h('span', { class: 'badge' }, '0-based')),
      h(
        'div',
        { class: 'nav-buttons' },
        h('a', { class: 'btn', href: flat > 0 ? href(at(flat - 1)) : null, 'aria-disabled': flat === 0 ? 'true' : null }, '← previous head'),
        layerSel,
        headSel,
        h('a', { class: 'btn', href: flat < L * H - 1 ? href(at(flat + 1)) : null, 'aria-disabled': flat === L * H - 1 ? 'true' : null }, 'next head →'),
        // Text runs have no image views.
        d.modality === 'vision' && ctx.data.live ? h('a', { class: 'btn primary', href: href({ view: 'image', run: r.run, layer: d.layer, head: d.head, mode: 0, sign: 1 }) }, 'Image view →') : null,
      ),
    ),
    h(
      'div',
      { class: 'stats' },
      stat('σ-weighted cosine', fmtSigned(d.weighted_cosine), `95 % chance ${fmt(d.weighted_band95.lo)} … ${fmt(d.weighted_band95.hi)}${inBand ? ' (inside)' : ''}`, 'stat-weighted'),
      stat('plain mean cosine', fmtSigned(d.mean_cosine), `${d.dims.head_dim} modes`),
      stat('depth l/(L−1)', fmt(d.depth, 2), `of ${L} layers`),
      stat('key salience ‖s‖/√dₕ', fmt(d.salience_norm / Math.sqrt(d.dims.head_dim)), `σ₀/√dₕ = ${fmt(d.modes[0]?.sigma_scaled ?? NaN)} (mode 0, the largest)`),
    ),
  );

  const grid = h('div', { class: 'grid2' });
  const spectrum = card('Singular spectrum');
  const cosines = card('Per-mode cosine uₙ·vₙ');
  grid.append(spectrum, cosines);
  const salience = card('Key-salience bias');
  const list = card('Modes');
  ctx.root.append(grid, h('div', { class: 'grid2' }, salience, list));
  const w = Math.max(420, spectrum.clientWidth - 36);
  spectrum.append(spectrumChart(d, w), note('Bars: σₙ/√dₕ, the logit a query with feature (x·uₙ) = 1 gets from a key with (vₙ·x) = 1. Colour: the mode’s cosine sign.'));
  cosines.append(cosineChart(d, r.run, w), legendRow(), note('Grey bands: 95 % and 99 % chance range of uₙ·vₙ for random unit vectors in R^d; dashed: the head’s σ-weighted mean. Click a dot to open the mode.'));
  salience.append(...salienceBlock(d, w));
  list.append(modeTable(d, r.run, d.modality === 'vision' && ctx.data.live));
}

const stat = statBox;

function legendRow(): HTMLElement {
  return h(
    'div',
    { class: 'legend-row' },
    h('span', null, h('i', { style: `background:${COLORS.positive}` }), 'grouping (c > 0)'),
    h('span', null, h('i', { style: `background:${COLORS.negative}` }), 'contextual (c ≤ 0)'),
    h('span', null, h('i', { style: `background:${COLORS.band95}` }), '95 % chance'),
    h('span', null, h('i', { style: `background:${COLORS.band99}` }), '99 % chance'),
  );
}

function modeTicks(n: number): number[] {
  const step = n <= 16 ? 1 : n <= 32 ? 4 : 8;
  return Array.from({ length: Math.ceil(n / step) }, (_, i) => i * step);
}


function spectrumChart(d: HeadDetail, width: number): Element {
  return Plot.plot({
    width,
    height: 260,
    marginLeft: 60,
    marginBottom: 42,
    style: { fontSize: '12px' },
    x: { label: 'Mode n (0-based, σ descending) →', ticks: modeTicks(d.modes.length), labelAnchor: 'center', labelOffset: 34 },
    y: { label: '↑ σₙ/√dₕ (logit per unit feature²)', grid: true, nice: true },
    marks: [
      Plot.barY(d.modes, { x: 'mode', y: 'sigma_scaled', fill: (m: ModeRow) => signColour(m.cosine), tip: { format: { fill: false } }, channels: { cosine: { value: 'cosine', label: 'cosine' }, sigma: { value: 'sigma', label: 'σ (unscaled)' } } }),
      Plot.ruleY([0]),
    ],
  });
}

function cosineChart(d: HeadDetail, run: string, width: number): Element {
  const n = d.modes.length;
  const smax = d.modes[0]?.sigma || 1;
  const lim = Math.max(1, ...d.modes.map((m) => Math.abs(m.cosine)));
  const plot = Plot.plot({
    width,
    height: 260,
    marginLeft: 60,
    marginTop: 28,
    marginBottom: 42,
    style: { fontSize: '12px' },
    x: { label: 'Mode n (0-based) →', domain: [-0.5, n - 0.5], labelAnchor: 'center', labelOffset: 34 },
    y: { label: '↑ cosine uₙ·vₙ', domain: [-lim, lim], grid: true, tickFormat: '+.1f' },
    r: { range: [2, 7], domain: [0, smax] },
    marks: [
      Plot.rect([d.chance.mode99], { x1: -0.5, x2: n - 0.5, y1: 'lo', y2: 'hi', fill: COLORS.band99, fillOpacity: 0.6 }),
      Plot.rect([d.chance.mode95], { x1: -0.5, x2: n - 0.5, y1: 'lo', y2: 'hi', fill: COLORS.band95, fillOpacity: 0.55 }),
      Plot.ruleY([0], { stroke: '#555' }),
      Plot.ruleY([d.weighted_cosine], { stroke: '#111', strokeDasharray: '5,4' }),
      Plot.dot(d.modes, {
        x: 'mode',
        y: 'cosine',
        r: 'sigma',
        fill: (m: ModeRow) => signColour(m.cosine),
        stroke: 'white',
        strokeWidth: 0.8,
        tip: { format: { fill: false, r: '.3f', y: '+.3f' } },
      }),
    ],
  });
  onMarkClick(plot, 'g[aria-label="dot"] circle', (i) => {
    location.hash = href({ view: 'mode', run, layer: d.layer, head: d.head, mode: d.modes[i].mode });
  });
  return plot;
}

function salienceBlock(d: HeadDetail, width: number): Node[] {
  const dh = d.dims.head_dim;
  if (!d.salience_norm) {
    return [note('This head’s query has no bias (or it is zero), so there is no key-salience term: every key’s logit depends on the query.')];
  }
  const out: Node[] = [
    h(
      'p',
      null,
      'Every query adds (s·xⱼ)/√dₕ to key j’s logit, with s = W',
      h('sub', null, 'k'),
      h('sup', null, 'ᵀ'),
      'b',
      h('sub', null, 'q'),
      `: a query-independent preference for some keys (docs/method.md §4). ‖s‖ = ${fmt(d.salience_norm)}, ‖s‖/√dₕ = ${fmt(d.salience_norm / Math.sqrt(dh))} logit per unit of x.`,
    ),
  ];
  if (d.salience_along_v) {
    const rows = d.salience_along_v.map((v, n) => ({ mode: n, value: v / Math.sqrt(dh) }));
    out.push(
      Plot.plot({
        width,
        height: 220,
        marginLeft: 60,
        marginBottom: 42,
        style: { fontSize: '12px' },
        x: { label: 'Key mode n (0-based) →', ticks: modeTicks(rows.length), labelAnchor: 'center', labelOffset: 34 },
        y: { label: '↑ (s·vₙ)/√dₕ (logit per unit vₙ·x)', grid: true },
        marks: [Plot.barY(rows, { x: 'mode', y: 'value', fill: '#7c6f9f', tip: true }), Plot.ruleY([0])],
      }),
      note('Salience split along the key-side vectors vₙ: which key features every query favours regardless of its own content.'),
    );
  }
  return out;
}

function modeTable(d: HeadDetail, run: string, images: boolean): HTMLElement {
  const b = d.chance.mode95;
  return h(
    'div',
    { class: 'table-scroll' },
    h(
      'table',
      { class: 'table', id: 'mode-table' },
      h('thead', null, h('tr', null, ...['n', 'σₙ', 'σₙ/√dₕ', 'cosine', 'vs chance', 'rel. gap', ''].map((t) => h('th', null, t)))),
      h(
        'tbody',
        null,
        d.modes.map((m) => {
          const outside = m.cosine < b.lo || m.cosine > b.hi;
          return h(
            'tr',
            { 'data-mode': m.mode },
            h('td', { class: 'num' }, m.mode),
            h('td', { class: 'num' }, fmt(m.sigma)),
            h('td', { class: 'num' }, fmt(m.sigma_scaled)),
            h('td', { class: 'num', style: `color:${signColour(m.cosine)}` }, fmtSigned(m.cosine)),
            h('td', null, outside ? (m.cosine > 0 ? 'above' : 'below') : 'inside 95 %'),
            h('td', { class: 'num', title: 'near 0: uₙ, vₙ not individually identifiable' }, m.rel_gap < 0.01 ? `${fmt(m.rel_gap, 4)} ⚠` : fmt(m.rel_gap, 3)),
            h(
              'td',
              { class: 'links' },
              h('a', { href: href({ view: 'mode', run, layer: d.layer, head: d.head, mode: m.mode }), class: 'mode-link' }, m.has_images ? 'top images' : 'mode'),
              images ? ' · ' : null,
              images ? h('a', { href: href({ view: 'image', run, layer: d.layer, head: d.head, mode: m.mode, sign: 1 }) }, 'on an image') : null,
            ),
          );
        }),
      ),
    ),
  );
}
