/**
 * Image view: drop or pick an image; choose layer, head, mode; see the query and key maps.
 * Clicking a patch shows the model's own attention row for that query patch and the
 * decomposition of its logits into the top modes, the key-salience bias and the rest, whose
 * parts add up to the model's logits (the residual is shown).
 */
import * as Plot from '@observablehq/plot';
import type { ViewContext } from '../context.js';
import { ApiError, errorText, type Decomposition, type HeadDetail, type ImageModes, type Maps } from '../data.js';
import { NORMALIZATION_TEXT, drawOverlay, hiDpiCanvas, loadImage, overlayLegend, patchAt } from '../overlay.js';
import { COLORS, KEY_SCALE, QUERY_SCALE, card, clear, errorBox, fmt, fmtSigned, fmtSmall, h, href, note, nowrap, onMarkClick, setHeading, signColour, sub, type Route } from '../ui.js';

type ImageRoute = Extract<Route, { view: 'image' }>;

interface State extends ImageRoute {
  key?: number; // selected key token (absolute index) for the decomposition
}

/** The input canvas's largest size (CSS shrinks it to its panel). */
const CANVAS = 440;

export async function renderImage(ctx: ViewContext, route: ImageRoute): Promise<(r: Route) => boolean> {
  const data = ctx.data;
  const runs = (await data.runs()).runs;
  const run = runs.find((x) => x.id === route.run);
  if (!run) throw new ApiError(404, `no run "${route.run}" under RUNS_DIR`);
  if (run.modality !== 'vision' || !data.live) {
    ctx.setCrumbs([
      ['Models', href({ view: 'models' })],
      [run.label, href({ view: 'head', run: run.id, layer: 0, head: 0 })],
      ['Image', null],
    ]);
    clear(ctx.root);
    ctx.root.append(
      card(
        'No image view for this run',
        note(
          h(
            'span',
            { 'data-testid': 'no-image-view' },
            run.modality !== 'vision' ? `${run.label} is a ${run.modality} model: the image views need a vision transformer. ` : 'This explorer has no live model. ',
            'Its weights are in the ',
            h('a', { href: href({ view: 'head', run: run.id, layer: route.layer, head: route.head }) }, 'Head view'),
            '.',
          ),
        ),
      ),
    );
    return () => false;
  }
  const st: State = { ...route };
  st.layer = Math.min(st.layer, run.dims.layers - 1);
  st.head = Math.min(st.head, run.dims.heads - 1);
  st.mode = Math.min(st.mode, run.dims.head_dim - 1);
  let head: HeadDetail = await data.head(run.id, st.layer, st.head);
  if (!ctx.alive()) return () => false;
  const crumbs = () =>
    ctx.setCrumbs([
      ['Models', href({ view: 'models' })],
      [run.label, href({ view: 'head', run: run.id, layer: 0, head: 0 })],
      [`L${st.layer} H${st.head}`, href({ view: 'head', run: run.id, layer: st.layer, head: st.head })],
      [`Mode ${st.mode}`, href({ view: 'mode', run: run.id, layer: st.layer, head: st.head, mode: st.mode })],
      ['Image', null],
    ]);
  crumbs();
  clear(ctx.root);

  // ---- sidebar ------------------------------------------------------------------------------
  const fileInput = h('input', { type: 'file', id: 'file', accept: 'image/*' });
  const drop = h(
    'label',
    { class: 'dropzone', id: 'dropzone', for: 'file' },
    h('strong', null, 'Drop an image here'),
    h('span', null, 'or click to choose a file (JPEG, PNG, WebP)'),
  );
  const gallerySel = h('select', { id: 'gallery', 'aria-label': 'pick an image' }, h('option', { value: '' }, 'Pick an image…'));
  const imgMsg = h('div', { id: 'image-message', role: 'alert', 'aria-live': 'polite' });
  const layerSel = h('select', { id: 'layer', 'aria-label': 'layer' }, Array.from({ length: run.dims.layers }, (_, l) => h('option', { value: l }, `Layer ${l}`)));
  const headSel = h('select', { id: 'head', 'aria-label': 'head' }, Array.from({ length: run.dims.heads }, (_, x) => h('option', { value: x }, `Head ${x}`)));
  const modeSel = h('select', { id: 'mode', 'aria-label': 'mode' });
  const signSel = h('select', { id: 'sign', 'aria-label': 'sign' }, h('option', { value: '1' }, '+ (uₙ, vₙ)'), h('option', { value: '-1' }, '− (−uₙ, −vₙ)'));
  const overlayBox = h('input', { type: 'checkbox', id: 'show-overlay', checked: true });
  const modeInfo = h('div', { class: 'mode-info' });
  const rankBox = h('div', { id: 'image-modes' });
  const sidebar = h(
    'aside',
    { class: 'sidebar' },
    card('Image', drop, fileInput, gallerySel, imgMsg, data.imageNote ? note(data.imageNote) : null),
    card(
      'Head and mode',
      h('div', { class: 'form' }, h('label', null, 'Layer', layerSel), h('label', null, 'Head', headSel), h('label', null, 'Mode', modeSel), h('label', null, 'Sign', signSel)),
      h('label', { class: 'check' }, overlayBox, ' show Q/K overlay on the image'),
      modeInfo,
    ),
    card('Modes on this image', rankBox),
  );

  // ---- main panels --------------------------------------------------------------------------
  const canvas = hiDpiCanvas(CANVAS);
  canvas.id = 'input-canvas';
  canvas.setAttribute('aria-label', 'the image as the model sees it; click a patch');
  const inputPanel = card('Input · click a patch', h('div', { class: 'canvas-wrap' }, canvas), overlayLegend(), h('p', { class: 'note small' }, `Overlay: ${NORMALIZATION_TEXT.percentile}.`));
  const qPanel = card('Query map Q(t) = x·uₙ');
  const kPanel = card('Key map K(t) = x·vₙ');
  const attPanel = card('Attention of the query patch');
  const decPanel = card('Logit decomposition');
  const checkPanel = card('Sum of parts against the model’s logits');
  const main = h(
    'div',
    { class: 'image-main' },
    h('div', { class: 'row3' }, inputPanel, qPanel, kPanel),
    h('div', { class: 'row2' }, attPanel, decPanel),
    checkPanel,
  );
  const placeholder = h('div', { class: 'placeholder', id: 'no-image' }, h('h2', null, 'No image yet'), h('p', null, 'Drop an image on the left, choose a file, or pick one from the list.'));
  ctx.root.append(h('div', { class: 'image-view' }, sidebar, h('div', { class: 'image-col' }, placeholder, main)));

  // ---- state helpers ------------------------------------------------------------------------
  let photo: HTMLImageElement | null = null;
  let maps: Maps | null = null;
  let dec: Decomposition | null = null;
  const tokens = { maps: 0, dec: 0, modes: 0, img: 0 };
  const sync = () => {
    history.replaceState(null, '', href(st));
    crumbs();
  };
  const fillModes = () => {
    clear(modeSel);
    for (const m of head.modes) modeSel.append(h('option', { value: m.mode }, `${m.mode}: c ${fmtSigned(m.cosine, 2)}, σ/√dₕ ${fmt(m.sigma_scaled, 2)}`));
    modeSel.value = String(st.mode);
    layerSel.value = String(st.layer);
    headSel.value = String(st.head);
    signSel.value = String(st.sign);
    const m = head.modes[st.mode];
    clear(modeInfo);
    if (m) {
      modeInfo.append(
        h('p', null, `cosine ${fmtSigned(m.cosine)} · σ ${fmt(m.sigma)} · gap ${fmt(m.rel_gap, 3)}`),
        h(
          'p',
          null,
          h('a', { href: href({ view: 'mode', run: run.id, layer: st.layer, head: st.head, mode: st.mode }) }, 'mode view'),
          ' · ',
          h('a', { href: href({ view: 'head', run: run.id, layer: st.layer, head: st.head }) }, 'head view'),
        ),
      );
    }
  };
  const showImageState = () => {
    const has = !!st.img;
    placeholder.hidden = has;
    main.hidden = !has;
  };
  const message = (text: string | Node, kind: 'error' | 'info' = 'error') => {
    clear(imgMsg);
    if (text) imgMsg.append(kind === 'error' ? errorBox(typeof text === 'string' ? text : text.textContent ?? '') : h('p', { class: 'info' }, text));
  };
  /** "name · 500×375" with the size kept on one line. */
  const described = (name: string, w: number, hgt: number) => h('span', null, name, ' · ', nowrap(`${w}×${hgt}`));
  /** The picker shows the image in view when it is one of its images, else nothing. */
  const syncPicker = () => {
    const key = st.img && /^f[0-9a-f]{20}$/.test(st.img) ? st.img.slice(1, 17) : '';
    gallerySel.value = [...gallerySel.options].some((o) => o.value === key) ? key : '';
  };

  const redrawCanvas = () => {
    if (!photo) return;
    const grid: [number, number] = maps?.grid ?? dec?.tokens.grid ?? [1, 1];
    const marks: [number, string][] = [];
    if (st.patch !== undefined) marks.push([st.patch, '#ffd400']);
    if (dec && st.key !== undefined && st.key >= dec.tokens.patch_start) marks.push([st.key - dec.tokens.patch_start, '#7CFC00']);
    drawOverlay(canvas, photo, grid, maps?.q ?? null, maps?.k ?? null, { maps: overlayBox.checked && !!maps, gridLines: true, marks });
  };

  const loadPhoto = async () => {
    const t = ++tokens.img;
    photo = null;
    if (!st.img) return;
    try {
      const img = await loadImage(await data.image(run.id, st.img, 'input'));
      if (t !== tokens.img || !ctx.alive()) return;
      photo = img;
      redrawCanvas();
    } catch (e) {
      // The API's own words (a 404 for an image the server no longer holds says so).
      if (t === tokens.img) message(errorText(e));
    }
  };

  const refreshMaps = async () => {
    if (!st.img) return;
    const t = ++tokens.maps;
    busy(qPanel, 'Running the model…');
    busy(kPanel, '');
    try {
      const m = await data.imageMaps(run.id, st.img, st.layer, st.head, st.mode, st.sign);
      if (t !== tokens.maps || !ctx.alive()) return;
      maps = m;
      drawMap(qPanel, m, 'q');
      drawMap(kPanel, m, 'k');
      redrawCanvas();
    } catch (e) {
      if (t !== tokens.maps) return;
      maps = null;
      failed(qPanel, e);
      clearBody(kPanel);
    }
  };

  const refreshModes = async () => {
    if (!st.img) return;
    const t = ++tokens.modes;
    clear(rankBox);
    rankBox.append(h('p', { class: 'loading' }, 'ranking modes…'));
    try {
      const r = await data.imageModes(run.id, st.img, st.layer, st.head);
      if (t !== tokens.modes || !ctx.alive()) return;
      clear(rankBox);
      rankBox.append(rankChart(r, st.mode, (n) => setState({ mode: n })), note('Cₙ = Σᵢⱼ Aᵢⱼ σₙ Qₙ(i) Kₙ(j)/√dₕ over all token pairs, as `qkscope contributions`: how much each mode adds to the attention-weighted logits on this image. Rank 0 = largest. Click a bar.'));
    } catch (e) {
      if (t === tokens.modes) {
        clear(rankBox);
        rankBox.append(errorBox(errorText(e)));
      }
    }
  };

  const refreshDecomp = async () => {
    const t = ++tokens.dec;
    dec = null;
    if (!st.img || st.patch === undefined) {
      for (const p of [attPanel, decPanel, checkPanel]) {
        clearBody(p);
        p.append(note('Click a patch of the image (or of a map) to see its attention row and the decomposition of its logits.'));
      }
      redrawCanvas();
      return;
    }
    busy(attPanel, 'Computing…');
    try {
      const d = await data.decomposition(run.id, st.img, st.layer, st.head, st.patch, 5);
      if (t !== tokens.dec || !ctx.alive()) return;
      dec = d;
      if (st.key === undefined || st.key >= d.tokens.count) st.key = argmax(d.attention);
      drawAttention();
      drawDecomposition();
      drawCheck();
      redrawCanvas();
    } catch (e) {
      if (t !== tokens.dec) return;
      failed(attPanel, e);
      clearBody(decPanel);
      clearBody(checkPanel);
    }
  };

  const drawAttention = () => {
    if (!dec) return;
    const d = dec;
    const [gh, gw] = d.tokens.grid;
    const ps = d.tokens.patch_start;
    const cells = Array.from({ length: gh * gw }, (_, p) => ({ row: Math.floor(p / gw), col: p % gw, patch: p, value: d.attention[ps + p] }));
    clearBody(attPanel);
    setHeading(attPanel, `Attention of query patch ${d.query.patch}`, `row ${d.query.row}, col ${d.query.col}`);
    const plot = gridPlot(attPanel, cells, { label: 'attention weight Aᵢⱼ (probability, √ scale)', scheme: 'viridis', type: 'sqrt', domain: [0, Math.max(...cells.map((c) => c.value), 1e-9)] }, [
      Plot.cell([{ row: d.query.row, col: d.query.col }], { x: 'col', y: 'row', fill: 'none', stroke: '#ffd400', strokeWidth: 3, inset: 1 }),
      st.key !== undefined && st.key >= ps
        ? Plot.cell([{ row: Math.floor((st.key - ps) / gw), col: (st.key - ps) % gw }], { x: 'col', y: 'row', fill: 'none', stroke: '#7CFC00', strokeWidth: 3, inset: 1 })
        : null,
    ]);
    plot.setAttribute('data-testid', 'attention-map');
    onMarkClick(
      plot,
      'g.main-cells rect',
      (i) => {
        st.key = ps + cells[i].patch;
        drawAttention();
        drawDecomposition();
        redrawCanvas();
      },
      (i, el) => el.setAttribute('data-patch', String(cells[i].patch)),
    );
    const specials = d.tokens.special.map((name, j) =>
      h(
        'button',
        { class: 'chip' + (st.key === j ? ' active' : ''), 'data-token': j, type: 'button' },
        `${name.toUpperCase()} ${fmt(d.attention[j], 3)}`,
      ),
    );
    specials.forEach((b, j) =>
      b.addEventListener('click', () => {
        st.key = j;
        drawAttention();
        drawDecomposition();
        redrawCanvas();
      }),
    );
    attPanel.append(plot);
    if (specials.length) attPanel.append(h('div', { class: 'chips' }, h('span', null, 'special tokens:'), ...specials));
    attPanel.append(
      note('The model’s own softmax row (yellow: the query; green: the key decomposed on the right). Click a cell to choose the key.'),
    );
  };

  const drawDecomposition = () => {
    if (!dec || st.key === undefined) return;
    const d = dec;
    const j = st.key;
    const ps = d.tokens.patch_start;
    const keyName = j < ps ? d.tokens.special[j].toUpperCase() : `patch ${j - ps} (row ${Math.floor((j - ps) / d.tokens.grid[1])}, col ${(j - ps) % d.tokens.grid[1]})`;
    clearBody(decPanel);
    setHeading(decPanel, 'Logit decomposition', `query patch ${d.query.patch} → key ${keyName}`);
    const rows = d.parts.map((p) => ({
      label: p.kind === 'mode' ? `mode ${p.mode} (c ${fmtSigned(d.modes[p.mode!].cosine, 2)})` : p.label,
      kind: p.kind,
      value: p.values[j],
      weighted: p.weighted,
      mode: p.mode,
    }));
    const sum = rows.reduce((a, r) => a + r.value, 0);
    const model = d.model_logit[j];
    const residual = model - sum;
    const chartRows = [...rows, { label: 'residual', kind: 'residual', value: residual, weighted: NaN, mode: undefined }];
    const colourOf = (k: string, mode?: number) =>
      k === 'mode'
        ? signColour(d.modes[mode!].cosine)
        : k === 'other_modes'
          ? '#8da0b3'
          : k === 'key_salience'
            ? '#7c6f9f'
            : k === 'residual'
              ? COLORS.residual
              : k === 'model'
                ? '#1d2330'
                : '#b0a48a';
    // Waterfall: each part starts where the previous one ended; the last bar is the model's logit.
    let run0 = 0;
    const steps = chartRows.map((r) => {
      const x1 = run0;
      run0 += r.value;
      return { ...r, x1, x2: run0 };
    });
    steps.push({ label: 'model’s logit', kind: 'model', value: model, weighted: NaN, mode: undefined, x1: 0, x2: model });
    const width = Math.max(360, decPanel.clientWidth - 36);
    const chart = Plot.plot({
      width,
      height: 30 + steps.length * 24 + 40,
      marginLeft: 150,
      marginRight: 56,
      marginBottom: 40,
      style: { fontSize: '12px' },
      x: { label: 'Cumulative logit aᵢⱼ (pre-softmax units) →', grid: true, labelAnchor: 'center', labelOffset: 32 },
      y: { label: null, domain: steps.map((r) => r.label) },
      marks: [
        Plot.barX(steps, {
          y: 'label',
          x1: 'x1',
          x2: 'x2',
          fill: (r: { kind: string; mode?: number }) => colourOf(r.kind, r.mode),
          channels: { part: { value: 'value', label: 'part' } },
          tip: { format: { fill: false, x1: false, x2: '+.5f', part: '+.5f' } },
        }),
        Plot.text(steps, {
          y: 'label',
          x: (r: { x1: number; x2: number }) => Math.max(r.x1, r.x2),
          text: (r: { value: number; kind: string }) => (r.kind === 'model' ? fmt(r.value, 3) : fmtSigned(r.value, 3)),
          textAnchor: 'start',
          dx: 4,
          fontSize: 10.5,
          fill: '#333',
          pointerEvents: 'none',
        }),
        Plot.ruleX([0]),
        Plot.ruleX([model], { stroke: '#1d2330', strokeDasharray: '3,3', strokeOpacity: 0.6 }),
      ],
    });
    const table = h(
      'table',
      { class: 'table decomp', 'data-testid': 'decomp-table', 'data-key': j, 'data-layer': d.layer, 'data-head': d.head, 'data-patch': d.query.patch },
      h('thead', null, h('tr', null, h('th', null, 'part'), h('th', { class: 'num' }, `at this key`), h('th', { class: 'num', title: 'Σⱼ Aᵢⱼ × part' }, 'attention-weighted'))),
      h(
        'tbody',
        null,
        rows.map((r) =>
          h(
            'tr',
            { 'data-part': r.kind, 'data-value': String(r.value) },
            h('td', null, h('i', { class: 'sw', style: `background:${colourOf(r.kind, r.mode)}` }), r.label),
            h('td', { class: 'num part-value' }, fmt(r.value, 5)),
            h('td', { class: 'num' }, fmt(r.weighted, 4)),
          ),
        ),
        h('tr', { class: 'sum', 'data-testid': 'decomp-sum', 'data-value': String(sum) }, h('td', null, '= sum of parts'), h('td', { class: 'num' }, fmt(sum, 5)), h('td', null)),
        h('tr', { class: 'model', 'data-testid': 'decomp-model', 'data-value': String(model) }, h('td', null, 'model’s logit aᵢⱼ'), h('td', { class: 'num' }, fmt(model, 5)), h('td', null)),
        h('tr', { class: 'residual', 'data-testid': 'decomp-residual', 'data-value': String(residual) }, h('td', null, 'residual (model − sum)'), h('td', { class: 'num' }, fmtSmall(residual)), h('td', null)),
      ),
    );
    decPanel.append(
      chart,
      table,
      note('aᵢⱼ = Σₙ σₙ(xᵢ·uₙ)(vₙ·xⱼ)/√dₕ + (s·xⱼ)/√dₕ + query constant (+ relative position bias). The query constant is the same for every key, so it cancels in the softmax. Top modes: largest |attention-weighted part| for this query.'),
    );
  };

  const drawCheck = () => {
    if (!dec) return;
    const d = dec;
    clearBody(checkPanel);
    const ps = d.tokens.patch_start;
    const pts = d.model_logit.map((m, j) => ({ model: m, sum: d.reconstructed[j], token: j < ps ? d.tokens.special[j].toUpperCase() : `patch ${j - ps}` }));
    const width = Math.max(360, checkPanel.clientWidth - 36);
    const lo = Math.min(...pts.map((p) => Math.min(p.model, p.sum)));
    const hi = Math.max(...pts.map((p) => Math.max(p.model, p.sum)));
    const pad = (hi - lo) * 0.05 || 0.1;
    const chart = Plot.plot({
      width: Math.min(width, 520),
      height: 300,
      marginLeft: 64,
      marginBottom: 44,
      style: { fontSize: '12px' },
      x: { label: 'Model’s logit aᵢⱼ (every key j) →', domain: [lo - pad, hi + pad], grid: true, labelAnchor: 'center', labelOffset: 34 },
      y: { label: '↑ Sum of parts', domain: [lo - pad, hi + pad], grid: true },
      marks: [
        Plot.line([
          [lo - pad, lo - pad],
          [hi + pad, hi + pad],
        ], { stroke: '#999', strokeDasharray: '4,3' }),
        Plot.dot(pts, { x: 'model', y: 'sum', r: 3, fill: COLORS.neutral, fillOpacity: 0.7, channels: { token: 'token' }, tip: { format: { x: '.5f', y: '.5f' } } }),
      ],
    });
    const summary = h(
      'div',
      { class: 'check-summary' },
      h('p', { 'data-testid': 'max-residual', 'data-value': String(d.max_abs_residual) }, h('strong', null, 'max |residual| over keys: '), fmtSmall(d.max_abs_residual), ' (float32 rounding)'),
      h('p', null, h('strong', null, 'softmax(sum of parts) vs the attention row: '), `max difference ${fmtSmall(d.softmax_max_abs_diff)}`),
      h('p', null, `${d.model_logit.length} keys (${d.tokens.special.length} special + ${d.tokens.grid[0] * d.tokens.grid[1]} patches). The model’s logits are read from the ONNX graph: the input of the block’s softmax.`),
    );
    checkPanel.append(h('div', { class: 'check-row' }, chart, summary));
  };

  // Map and canvas clicks choose the query patch.
  const choosePatch = (p: number) => {
    setState({ patch: p });
  };
  canvas.addEventListener('click', (ev) => {
    const grid = maps?.grid ?? dec?.tokens.grid;
    if (grid) choosePatch(patchAt(canvas, ev, grid));
  });
  overlayBox.addEventListener('change', redrawCanvas);

  function drawMap(panel: HTMLElement, m: Maps, which: 'q' | 'k') {
    const [, gw] = m.grid;
    const vals = which === 'q' ? m.q : m.k;
    const cells = vals.map((v, p) => ({ row: Math.floor(p / gw), col: p % gw, patch: p, value: v }));
    const lim = Math.max(1e-9, ...vals.map(Math.abs));
    const sgn = m.sign > 0 ? '' : '−';
    clearBody(panel);
    setHeading(panel, which === 'q' ? 'Query map' : 'Key map', which === 'q' ? `Q(t) = ${sgn}x·u${sub(m.mode)}` : `K(t) = ${sgn}x·v${sub(m.mode)}`);
    const plot = gridPlot(
      panel,
      cells,
      // Red positive (query) and cyan positive (key), as the overlays and the CLI.
      { label: which === 'q' ? 'Q(t) (LayerNorm units)' : 'K(t) (LayerNorm units)', interpolate: which === 'q' ? QUERY_SCALE : KEY_SCALE, type: 'diverging', domain: [-lim, lim] },
      st.patch !== undefined ? [Plot.cell([{ row: Math.floor(st.patch / gw), col: st.patch % gw }], { x: 'col', y: 'row', fill: 'none', stroke: '#ffd400', strokeWidth: 3, inset: 1 })] : [],
    );
    plot.setAttribute('data-testid', which === 'q' ? 'query-map' : 'key-map');
    onMarkClick(plot, 'g.main-cells rect', (i) => choosePatch(cells[i].patch), (i, el) => el.setAttribute('data-patch', String(cells[i].patch)));
    panel.append(plot, h('p', { class: 'note small' }, `max ${fmt(which === 'q' ? m.qmax : m.kmax, 3)} · S = max Q × max K = ${fmt(m.score, 3)}`));
  }

  function gridPlot(
    panel: HTMLElement,
    cells: { row: number; col: number; value: number }[],
    color: { label: string; scheme?: string; interpolate?: (t: number) => string; type: 'linear' | 'sqrt' | 'diverging'; domain: [number, number] },
    extra: (Plot.Markish | null)[],
  ): SVGSVGElement | HTMLElement {
    const gh = Math.max(...cells.map((c) => c.row)) + 1;
    const gw = Math.max(...cells.map((c) => c.col)) + 1;
    // As large as the panel allows (the maps are what the view is for).
    const inner = Math.max(220, Math.min(440, (panel.clientWidth || 320) - 36 - 50));
    const cell = inner / Math.max(gh, gw);
    return Plot.plot({
      width: 40 + gw * cell + 10,
      height: 22 + gh * cell + 36,
      marginLeft: 40,
      marginRight: 10,
      marginTop: 22,
      marginBottom: 36,
      padding: 0,
      style: { fontSize: '11px' },
      x: { label: 'Patch column →', tickSize: 0, ticks: ticksFor(gw), labelAnchor: 'center', labelOffset: 30 },
      y: { label: '↓ Patch row', tickSize: 0, ticks: ticksFor(gh), labelAnchor: 'top' },
      // Three significant digits on the √ scale of small probabilities (0.01 0.01 0.02 said nothing).
      color: { ...color, legend: true, width: 250, tickFormat: color.type === 'diverging' ? '+.2f' : color.type === 'sqrt' ? '.2~r' : '.2f', ticks: 4 } as Plot.ScaleOptions,
      marks: [Plot.cell(cells, { x: 'col', y: 'row', fill: 'value', className: 'main-cells', tip: { format: { fill: color.type === 'diverging' ? '+.4f' : '.4f' } } }), ...extra],
    }) as SVGSVGElement | HTMLElement;
  }

  // ---- image sources ------------------------------------------------------------------------
  const useImage = async (id: string, label: Node) => {
    st.img = id;
    st.key = undefined;
    message(label, 'info');
    showImageState();
    sync();
    syncPicker();
    await Promise.all([loadPhoto(), refreshMaps(), refreshModes(), refreshDecomp()]);
  };
  const upload = async (file: File) => {
    message(`uploading ${file.name}…`, 'info');
    try {
      const r = await data.upload(file, file.name);
      await useImage(r.id, described(file.name, r.width, r.height));
    } catch (e) {
      message(`${file.name}: ${errorText(e)}`);
    }
  };
  fileInput.addEventListener('change', () => {
    const f = fileInput.files?.[0];
    if (f) void upload(f);
    fileInput.value = '';
  });
  for (const ev of ['dragenter', 'dragover']) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
  }
  for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const f = (e as DragEvent).dataTransfer?.files?.[0];
    if (f) void upload(f);
  });
  // Let a drop anywhere on the page work too, instead of the browser opening the file.
  const pageDrop = (e: DragEvent) => {
    if (!ctx.alive()) {
      window.removeEventListener('drop', pageDrop);
      return;
    }
    e.preventDefault();
    const f = e.dataTransfer?.files?.[0];
    if (f && !drop.contains(e.target as Node)) void upload(f);
  };
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', pageDrop);
  gallerySel.addEventListener('change', async () => {
    const key = gallerySel.value;
    if (!key) return;
    const label = gallerySel.selectedOptions[0]?.textContent ?? key;
    message(`loading ${label}…`, 'info');
    try {
      const r = await data.pick(run.id, key);
      await useImage(r.id, described(label, r.width, r.height));
    } catch (e) {
      message(`${label}: ${errorText(e)}`);
    }
  });
  void data
    .gallery(run.id)
    .then((g) => {
      for (const x of g.images) gallerySel.append(h('option', { value: x.key }, `${x.label}${x.source === 'scan' ? ' (scan)' : ''}`));
      if (g.images.length === 0) gallerySel.append(h('option', { value: '', disabled: true }, '(none: start serve with --images DIR)'));
      if (g.refused) gallerySel.after(note(`${g.refused} scan images are not offered: they lie outside the folders the server may read (${g.refused_hint ?? ''}).`));
      syncPicker();
    })
    .catch((e) => message(`the image list: ${errorText(e)}`));

  // ---- controls -----------------------------------------------------------------------------
  async function setState(p: Partial<State>) {
    const prev = { ...st };
    Object.assign(st, p);
    if (p.patch !== undefined && p.patch !== prev.patch) st.key = undefined;
    if (st.layer !== prev.layer || st.head !== prev.head) {
      head = await data.head(run!.id, st.layer, st.head);
      if (!ctx.alive()) return;
      st.key = undefined;
    }
    fillModes();
    sync();
    syncPicker();
    const lh = st.layer !== prev.layer || st.head !== prev.head;
    const jobs: Promise<void>[] = [];
    if (st.img !== prev.img) jobs.push(loadPhoto());
    if (lh || st.mode !== prev.mode || st.sign !== prev.sign || st.img !== prev.img) jobs.push(refreshMaps());
    if (lh || st.img !== prev.img) jobs.push(refreshModes());
    else if (st.mode !== prev.mode) highlightRank();
    if (lh || st.patch !== prev.patch || st.img !== prev.img) jobs.push(refreshDecomp());
    if (!jobs.length) redrawCanvas();
    await Promise.all(jobs);
  }
  const highlightRank = () => {
    rankBox.querySelectorAll('[data-mode]').forEach((el) => el.classList.toggle('active', el.getAttribute('data-mode') === String(st.mode)));
  };
  layerSel.addEventListener('change', () => void setState({ layer: Number(layerSel.value), mode: Math.min(st.mode, run.dims.head_dim - 1) }));
  headSel.addEventListener('change', () => void setState({ head: Number(headSel.value) }));
  modeSel.addEventListener('change', () => void setState({ mode: Number(modeSel.value) }));
  signSel.addEventListener('change', () => void setState({ sign: Number(signSel.value) > 0 ? 1 : -1 }));

  // ---- first draw ---------------------------------------------------------------------------
  fillModes();
  showImageState();
  if (st.img) {
    await Promise.all([loadPhoto(), refreshMaps(), refreshModes(), refreshDecomp()]);
  } else await refreshDecomp();

  return (r: Route) => {
    if (r.view !== 'image' || r.run !== run.id) return false;
    void setState({ layer: r.layer, head: r.head, mode: r.mode, sign: r.sign, img: r.img, patch: r.patch });
    return true;
  };
}

// ---- helpers --------------------------------------------------------------------------------

function ticksFor(n: number): number[] {
  const step = n <= 8 ? 1 : n <= 16 ? 2 : n <= 32 ? 4 : 8;
  return Array.from({ length: Math.ceil(n / step) }, (_, i) => i * step);
}

function argmax(a: number[]): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

function clearBody(panel: HTMLElement): void {
  const title = panel.querySelector('h2');
  clear(panel);
  if (title) panel.append(title);
}

function busy(panel: HTMLElement, text: string): void {
  clearBody(panel);
  if (text) panel.append(h('p', { class: 'loading' }, text));
}

function failed(panel: HTMLElement, e: unknown): void {
  clearBody(panel);
  panel.append(errorBox(errorText(e)));
}

function rankChart(r: ImageModes, current: number, pick: (n: number) => void): Element {
  // Ranked as `qkscope contributions` ranks them: largest contribution first (rank 0).
  const rows = r.modes.slice(0, 10).map((m) => ({ ...m, label: `#${m.rank} mode ${m.mode}` }));
  const plot = Plot.plot({
    width: 250,
    height: 30 + rows.length * 20 + 38,
    marginLeft: 84,
    marginRight: 12,
    marginBottom: 38,
    style: { fontSize: '11px' },
    x: { label: 'Contribution Cₙ (logit) →', grid: true, ticks: 4, labelAnchor: 'center', labelOffset: 30 },
    y: { label: null, domain: rows.map((x) => x.label) },
    marks: [
      Plot.barX(rows, {
        y: 'label',
        x: 'contribution',
        // Red positive, blue negative, as the CLI's contributions figure.
        fill: (x: { contribution: number }) => signColour(x.contribution),
        stroke: (x: { mode: number }) => (x.mode === current ? '#111' : 'none'),
        strokeWidth: 2,
        tip: { format: { fill: false, stroke: false, x: '+.4f' } },
        channels: { cosine: { value: 'cosine', label: 'cosine' }, share: { value: (x: { share: number }) => `${(100 * x.share).toFixed(1)} %`, label: 'share of Σ|C|' } },
      }),
      Plot.ruleX([0]),
    ],
  });
  onMarkClick(
    plot,
    'g[aria-label="bar"] rect',
    (i) => pick(rows[i].mode),
    (i, el) => el.setAttribute('data-mode', String(rows[i].mode)),
  );
  return plot;
}
