/** Models view: the paper's figure over every run, and a layer × head heatmap per model. */
import * as Plot from '@observablehq/plot';
import type { ViewContext } from '../context.js';
import { errorText, type Anisotropy, type DataSource, type ModelRun } from '../data.js';
import { MODEL_COLORS, card, clear, fmt, h, href, note, onMarkClick } from '../ui.js';

type Stat = 'weighted' | 'plain';

const state: { stat: Stat; relative: boolean } = { stat: 'weighted', relative: false };

function anisotropyOf(data: DataSource, id: string): Promise<Anisotropy> {
  return data.anisotropy(id).catch((e: unknown) => ({ available: false, reason: errorText(e) }));
}

/** Unique legend labels: the model id, with the run id when two runs share a model. */
function labels(runs: ModelRun[]): Map<string, string> {
  const count = new Map<string, number>();
  for (const r of runs) count.set(r.label, (count.get(r.label) ?? 0) + 1);
  return new Map(runs.map((r) => [r.id, (count.get(r.label) ?? 0) > 1 ? `${r.label} (${r.id})` : r.label]));
}

export async function renderModels(ctx: ViewContext): Promise<void> {
  ctx.setCrumbs([['Models', null]]);
  const { runs, runs_dir } = await ctx.data.models();
  if (!ctx.alive()) return;
  clear(ctx.root);
  if (runs.length === 0) {
    const dir = runs_dir.replace(/\/+$/, '') || 'RUNS_DIR';
    ctx.root.append(
      h('div', { class: 'page-title' }, h('h1', null, 'Models')),
      card(
        'No runs yet',
        h('p', { 'data-testid': 'empty-state' }, h('code', null, runs_dir), ' holds no run. Make one (it appears here within two seconds, no restart needed):'),
        h('pre', { class: 'commands' }, `# the weights only: singular modes, cosines, chance bands\nqkscope svd MODEL --out ${dir}/NAME\n\n# plus the top images of every mode (the Mode view) and the anisotropy baseline\nqkscope scan MODEL IMAGES --out ${dir}/NAME`),
        note(h('span', null, 'MODEL is a Hugging Face id (google/vit-base-patch16-224) or a checkpoint folder; IMAGES a folder, list, .tar or .parquet of photos. Then reload this page.')),
      ),
    );
    return;
  }
  const names = labels(runs);
  const colour = new Map(runs.map((r, i) => [r.id, MODEL_COLORS[i % MODEL_COLORS.length]]));

  const statSel = h(
    'select',
    { id: 'stat', 'aria-label': 'statistic' },
    h('option', { value: 'weighted' }, 'σ-weighted mean cosine (paper)'),
    h('option', { value: 'plain' }, 'plain mean cosine'),
  );
  statSel.value = state.stat;
  const relBox = h('input', { type: 'checkbox', id: 'relative' });
  relBox.checked = state.relative;
  const status = h('span', { class: 'status', id: 'rel-status' });
  const controls = h(
    'div',
    { class: 'controls' },
    h('label', null, 'Statistic ', statSel),
    h('label', { title: 'subtract, per layer, the mean cosine between centre-patch embeddings of different images (docs/method.md §3)' }, relBox, ' anisotropy-relative cosine'),
    status,
  );
  const chartBox = h('div', { class: 'chart', id: 'models-chart' });
  const heatGrid = h('div', { class: 'heatmaps' });

  ctx.root.append(
    h('div', { class: 'page-title' }, h('h1', null, 'Models'), h('p', { class: 'sub' }, `${runs.length} run${runs.length > 1 ? 's' : ''} · grouping (cosine > 0) early, contextualisation (≤ 0) late?`)),
    card('Layer-mean cosine against normalised depth', controls, chartBox, note('Each line is one model: the mean over heads of each head’s cosine uₙ·vₙ, against depth l/(L−1). Shaded: the model’s 95 % chance band (random unit vectors in its width d). Click a point to open that layer’s heads.')),
    h('h2', { class: 'section' }, 'Layer × head heatmaps'),
    heatGrid,
    card('Runs', runTable(runs)),
  );

  const draw = async () => {
    let aniso: Map<string, Anisotropy> | null = null;
    if (state.relative) {
      status.textContent = 'reading the anisotropy baselines…';
      const list = await Promise.all(runs.map(async (r) => [r.id, await anisotropyOf(ctx.data, r.id)] as const));
      if (!ctx.alive()) return;
      aniso = new Map(list);
      const missing = list.filter(([, a]) => !a.available);
      const have = list.filter(([, a]) => a.available);
      status.textContent = [
        have.length ? `relative to anisotropy: ${have.map(([id, a]) => `${names.get(id)}: ${a.description}`).join('; ')}` : '',
        missing.length ? `no baseline for ${missing.map(([id, a]) => `${names.get(id)} (${a.reason ?? ''})`).join('; ')}` : '',
      ]
        .filter(Boolean)
        .join(' · ');
    } else status.textContent = '';
    clear(chartBox);
    chartBox.append(curveChart(runs, names, colour, state.stat, aniso, chartBox.clientWidth || 1100));
    clear(heatGrid);
    for (const r of runs) heatGrid.append(heatmapCard(r, names.get(r.id)!, state.stat));
  };
  statSel.addEventListener('change', () => {
    state.stat = statSel.value as Stat;
    void draw();
  });
  relBox.addEventListener('change', () => {
    state.relative = relBox.checked;
    void draw();
  });
  await draw();
}

interface CurveRow {
  id: string;
  model: string;
  layer: number;
  layers: number;
  depth: number;
  value: number;
  lo: number;
  hi: number;
}

function curveChart(runs: ModelRun[], names: Map<string, string>, colour: Map<string, string>, stat: Stat, aniso: Map<string, Anisotropy> | null, width: number): Element {
  const rows: CurveRow[] = [];
  for (const r of runs) {
    const a = aniso?.get(r.id);
    // Relative curves come from the server, computed as `qkscope compare --relative` does (band shifted too).
    const curve = aniso ? (a?.available && a.relative ? a.relative[stat] : null) : r[stat];
    r.depth.forEach((d, l) =>
      rows.push({ id: r.id, model: names.get(r.id)!, layer: l, layers: r.dims.layers, depth: d, value: curve?.value[l] ?? NaN, lo: curve?.band95.lo[l] ?? NaN, hi: curve?.band95.hi[l] ?? NaN }),
    );
  }
  const shown = rows.filter((r) => Number.isFinite(r.value));
  const bands = rows.filter((r) => Number.isFinite(r.lo) && Number.isFinite(r.hi));
  // Headroom: no point sits on the plot's edge.
  const ys = [...shown.map((r) => r.value), ...bands.flatMap((r) => [r.lo, r.hi]), 0];
  const y0 = Math.min(...ys);
  const y1 = Math.max(...ys);
  const pad = Math.max(0.02, (y1 - y0) * 0.08);
  const domain = runs.map((r) => names.get(r.id)!);
  const yLabel = `${stat === 'weighted' ? 'σ-weighted' : 'plain'} mean cosine${aniso ? ' − anisotropy' : ''} (uₙ·vₙ, unitless)`;
  const plot = Plot.plot({
    width: Math.max(560, width),
    height: 380,
    marginLeft: 64,
    marginBottom: 44,
    style: { fontSize: '13px' },
    x: { label: 'Normalised depth l/(L−1) →', domain: [0, 1], grid: true, labelAnchor: 'center', labelOffset: 36 },
    y: { label: `↑ ${yLabel}`, grid: true, tickFormat: '+.2f', domain: [y0 - pad, y1 + pad] },
    color: { domain, range: runs.map((r) => colour.get(r.id)!), legend: true },
    marks: [
      Plot.areaY(bands, { x: 'depth', y1: 'lo', y2: 'hi', z: 'model', fill: 'model', fillOpacity: 0.13, curve: 'monotone-x' }),
      Plot.ruleY([0], { stroke: '#333', strokeOpacity: 0.6 }),
      Plot.lineY(shown, { x: 'depth', y: 'value', z: 'model', stroke: 'model', strokeWidth: 2.2 }),
      Plot.dot(shown, {
        x: 'depth',
        y: 'value',
        fill: 'model',
        r: 4,
        stroke: 'white',
        channels: { layer: { value: 'layer', label: 'Layer (0-based)' }, band: { value: (d: CurveRow) => `${fmt(d.lo)} … ${fmt(d.hi)}`, label: '95 % chance' } },
        tip: { format: { x: '.2f', y: '+.3f', fill: true } },
      }),
    ],
  });
  plot.setAttribute('data-testid', 'models-chart');
  onMarkClick(plot, 'g[aria-label="dot"] circle', (i) => {
    const r = shown[i];
    location.hash = href({ view: 'head', run: r.id, layer: r.layer, head: 0 });
  });
  return plot;
}

function heatmapCard(r: ModelRun, name: string, stat: Stat): HTMLElement {
  const cells: { layer: number; head: number; value: number }[] = [];
  r.heads.forEach((hs, l) => hs.forEach((v, hd) => cells.push({ layer: l, head: hd, value: stat === 'weighted' ? v.weighted : v.plain })));
  const m = Math.max(0.05, ...cells.map((c) => Math.abs(c.value)));
  const H = r.dims.heads;
  const L = r.dims.layers;
  const cellW = Math.max(18, Math.min(46, Math.floor(330 / H)));
  const cellH = Math.max(14, Math.min(34, Math.floor(330 / L)));
  const plot = Plot.plot({
    width: Math.max(300, 56 + cellW * H + 16),
    height: 24 + cellH * L + 40,
    marginLeft: 56,
    marginRight: 16,
    marginTop: 24,
    marginBottom: 40,
    padding: 0,
    style: { fontSize: '12px' },
    x: { label: 'Head →', tickSize: 0, labelAnchor: 'center', labelOffset: 32 },
    y: { label: '↓ Layer', tickSize: 0, labelAnchor: 'top' },
    // Red positive, blue negative, as the CLI's heatmap.
    color: { type: 'diverging', scheme: 'RdBu', reverse: true, domain: [-m, m], legend: true, label: `${stat === 'weighted' ? 'σ-weighted' : 'plain'} cosine`, width: 260, tickFormat: '+.2f' } as Plot.ScaleOptions,
    marks: [
      Plot.cell(cells, {
        x: 'head',
        y: 'layer',
        fill: 'value',
        inset: 0.5,
        tip: { format: { fill: '+.3f' } },
      }),
      cellW >= 34 && cellH >= 18 ? Plot.text(cells, { x: 'head', y: 'layer', text: (d: { value: number }) => fmt(d.value, 2), fill: (d: { value: number }) => (Math.abs(d.value) > m * 0.6 ? 'white' : '#222'), fontSize: 10, pointerEvents: 'none' }) : null,
    ],
  });
  const wrap = h('section', { class: 'card heat', 'data-run': r.id }, h('h2', null, name), h('p', { class: 'sub' }, `${r.family} · L=${L} H=${H} d=${r.dims.width} · click a cell`), plot);
  onMarkClick(
    plot,
    'g[aria-label="cell"] rect',
    (i) => {
      const c = cells[i];
      location.hash = href({ view: 'head', run: r.id, layer: c.layer, head: c.head });
    },
    (i, el) => {
      el.setAttribute('data-layer', String(cells[i].layer));
      el.setAttribute('data-head', String(cells[i].head));
    },
  );
  return wrap;
}

function runTable(runs: ModelRun[]): HTMLElement {
  return h(
    'table',
    { class: 'table' },
    h('thead', null, h('tr', null, ...['Run', 'Model', 'Family', 'L', 'H', 'd', 'd_h', 'Scan', 'Input'].map((t) => h('th', null, t)))),
    h(
      'tbody',
      null,
      runs.map((r) =>
        h(
          'tr',
          null,
          h('td', null, h('a', { href: href({ view: 'head', run: r.id, layer: 0, head: 0 }) }, r.id)),
          h('td', null, r.label),
          h('td', null, r.family),
          h('td', { class: 'num' }, r.dims.layers),
          h('td', { class: 'num' }, r.dims.heads),
          h('td', { class: 'num' }, r.dims.width),
          h('td', { class: 'num' }, r.dims.head_dim),
          h('td', null, r.has_scan ? 'yes' : '–'),
          h('td', { class: 'path', title: r.input }, r.input),
        ),
      ),
    ),
  );
}
