/**
 * Mode view: a mode's numbers and its top images for both signs, with query/key overlays. The
 * cards appear at once (names and scores from the scan); the maps of all of them come in one
 * reply (one batched pass on the server) and the small crops load in parallel.
 */
import type { ViewContext } from '../context.js';
import { errorText, type HeadDetail, type ModeMaps, type TopEntry, type TopImageMaps } from '../data.js';
import { NORMALIZATION_TEXT, drawOverlay, hiDpiCanvas, loadImage, overlayLegend } from '../overlay.js';
import { card, clear, errorBox, fmt, fmtSigned, h, href, note, statBox } from '../ui.js';

type ModeRoute = { run: string; layer: number; head: number; mode: number };

const CARD = 168;

export async function renderMode(ctx: ViewContext, r: ModeRoute): Promise<void> {
  const t0 = performance.now();
  // The maps are the slow part: asked for first, in parallel with the numbers.
  const mapsP = ctx.data.modeMaps(r.run, r.layer, r.head, r.mode, Math.round(CARD * Math.min(2, window.devicePixelRatio || 1)));
  mapsP.catch(() => undefined);
  const [d, head] = await Promise.all([ctx.data.mode(r.run, r.layer, r.head, r.mode), ctx.data.head(r.run, r.layer, r.head)]);
  if (!ctx.alive()) return;
  ctx.setCrumbs([
    ['Models', href({ view: 'models' })],
    [head.model, href({ view: 'head', run: r.run, layer: 0, head: 0 })],
    [`L${r.layer} H${r.head}`, href({ view: 'head', run: r.run, layer: r.layer, head: r.head })],
    [`Mode ${r.mode}`, null],
  ]);
  clear(ctx.root);
  const dh = head.dims.head_dim;
  const b = d.chance.mode95;
  const where = d.cosine > b.hi ? 'above the 95 % chance band: grouping' : d.cosine < b.lo ? 'below the 95 % chance band: contextual' : 'inside the 95 % chance band';
  const to = (n: number) => href({ view: 'mode', run: r.run, layer: r.layer, head: r.head, mode: n });
  const images = head.modality === 'vision' && ctx.data.live;
  ctx.root.append(
    h(
      'div',
      { class: 'page-title' },
      h('h1', null, `L${r.layer} H${r.head} M${r.mode}`, h('span', { class: 'badge' }, '0-based')),
      h(
        'div',
        { class: 'nav-buttons' },
        h('a', { class: 'btn', href: r.mode > 0 ? to(r.mode - 1) : null, 'aria-disabled': r.mode === 0 ? 'true' : null }, '← mode ' + Math.max(0, r.mode - 1)),
        h('a', { class: 'btn', href: href({ view: 'head', run: r.run, layer: r.layer, head: r.head }) }, '↑ head'),
        h('a', { class: 'btn', href: r.mode < dh - 1 ? to(r.mode + 1) : null, 'aria-disabled': r.mode === dh - 1 ? 'true' : null }, 'mode ' + Math.min(dh - 1, r.mode + 1) + ' →'),
        images ? h('a', { class: 'btn primary', href: href({ view: 'image', run: r.run, layer: r.layer, head: r.head, mode: r.mode, sign: 1 }) }, 'Try on an image →') : null,
      ),
    ),
    h(
      'div',
      { class: 'stats' },
      statBox('cosine uₙ·vₙ', fmtSigned(d.cosine), where, 'mode-cosine'),
      statBox('σₙ', fmt(d.sigma), `σₙ/√dₕ = ${fmt(d.sigma_scaled)} (logit gain)`),
      statBox('relative gap', fmt(d.rel_gap, 3), d.rel_gap < 0.01 ? '⚠ near-degenerate: only the span is identifiable' : 'identifiable'),
      statBox('rank in head', `${r.mode}`, `of ${dh} modes (0…${dh - 1}) by σ, descending: 0 is the largest`),
    ),
  );
  if (!d.has_scan) {
    ctx.root.append(
      card(
        'Top images',
        note(
          h(
            'span',
            null,
            'This run has no scan database (run.db), so there are no top images (',
            h('code', null, 'qkscope scan MODEL IMAGES --out RUN'),
            ' makes one).',
            images ? [' You can still ', h('a', { href: href({ view: 'image', run: r.run, layer: r.layer, head: r.head, mode: r.mode, sign: 1 }) }, 'see this mode on any image'), '.'] : null,
          ),
        ),
      ),
    );
    return;
  }
  if (d.scan) {
    const sc = d.scan;
    const bits = [
      sc.image_count !== null ? `${sc.image_count} images scanned` : null,
      sc.top_k !== null ? `top ${sc.top_k} kept per sign` : null,
      sc.status && sc.status !== 'complete' ? `scan ${sc.status}` : null,
    ].filter(Boolean);
    if (bits.length) ctx.root.append(note(`Scan: ${bits.join(' · ')}.`));
    if (sc.embedding === 'residual') {
      ctx.root.append(errorBox('This scan ranked images by projecting the residual stream h (--embedding residual); the maps drawn here project x = LN(h), the space of the modes, so they can differ from what the scan scored.'));
    }
    if (sc.layers && !sc.layers.includes(r.layer)) {
      ctx.root.append(card('Top images', note(`Layer ${r.layer} was not scanned (scanned layers: ${sc.layers.join(', ')}).`)));
      return;
    }
  }
  const progress = h('div', { class: 'maps-progress', role: 'status', 'aria-live': 'polite' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), `Computing the query/key maps of ${d.top.length} images (one batched pass)…`);
  ctx.root.append(progress);
  const cards = new Map<string, { link: HTMLAnchorElement; canvas: HTMLCanvasElement; entry: TopEntry }>();
  const sections: HTMLElement[] = [];
  for (const sign of [1, -1] as const) {
    const entries = d.top.filter((t) => t.sign === sign);
    const title = sign > 0 ? 'Positive sign (uₙ, vₙ)' : 'Negative sign (−uₙ, −vₙ)';
    const body = h('div', { class: 'tops', 'data-sign': sign > 0 ? 'pos' : 'neg' });
    const sec = card(title, body);
    if (sign > 0) sec.querySelector('h2')!.after(overlayLegend());
    sections.push(sec);
    ctx.root.append(sec);
    if (entries.length === 0) {
      body.append(note('No top images for this sign in the scan.'));
      continue;
    }
    for (const t of entries) {
      const c = topCard(t);
      cards.set(`${t.sign}|${t.rank}`, { ...c, entry: t });
      body.append(c.link);
    }
  }
  ctx.root.append(note('Score S = maxₜ Q(t) × maxₜ K(t) (docs/method.md §5). Maps: Q(t) = ±x_t·uₙ in red, K(t) = ±x_t·vₙ in cyan, white where both are high; ' + NORMALIZATION_TEXT.percentile + '. Ranks are 0-based (#0 = best). Click an image to explore it.'));

  let maps: ModeMaps;
  try {
    maps = await mapsP;
  } catch (e) {
    if (!ctx.alive()) return;
    progress.replaceWith(errorBox(`The maps could not be computed: ${errorText(e)}`));
    for (const c of cards.values()) c.link.classList.add('failed');
    return;
  }
  if (!ctx.alive()) return;
  ctx.root.dataset.mapsMs = String(Math.round(performance.now() - t0));
  progress.textContent = `Drawing ${maps.images.length} images…`;
  if (maps.refused) {
    sections[0].before(errorBox(`${maps.refused} of the scan's images lie outside RUNS_DIR and the folders the server may read: ${maps.refused_hint ?? ''}.`));
  }
  let left = maps.images.length;
  const finished = () => {
    if (--left > 0) return;
    const ms = Math.round(performance.now() - t0);
    progress.remove();
    ctx.root.dataset.readyMs = String(ms);
    document.body.dataset.modeReadyMs = String(ms);
  };
  if (left === 0) finished();
  for (const m of maps.images) {
    const c = cards.get(`${m.sign}|${m.rank}`);
    if (!c) {
      finished();
      continue;
    }
    void drawCard(ctx, r, head, maps, m, c).finally(finished);
  }
}

function topCard(t: TopEntry): { link: HTMLAnchorElement; canvas: HTMLCanvasElement } {
  const canvas = hiDpiCanvas(CARD);
  canvas.classList.add('placeholder-canvas');
  const link = h('a', { class: 'top-card', 'data-rank': t.rank, 'data-sign': t.sign > 0 ? 'pos' : 'neg', href: '#' }, canvas);
  link.append(
    h(
      'div',
      { class: 'caption' },
      h('div', { class: 'title', title: t.label }, `#${t.rank} ${shortLabel(t.label)}`),
      h('div', null, `S = ${fmt(t.score, 2)}`),
      h('div', { class: 'qk' }, h('span', { class: 'q' }, `Q ${fmt(t.qmax, 2)}`), ' · ', h('span', { class: 'k' }, `K ${fmt(t.kmax, 2)}`)),
    ),
  );
  link.addEventListener('click', (e) => {
    if (!link.classList.contains('ready')) e.preventDefault();
  });
  return { link, canvas };
}

async function drawCard(ctx: ViewContext, r: ModeRoute, head: HeadDetail, all: ModeMaps, m: TopImageMaps, c: { link: HTMLAnchorElement; canvas: HTMLCanvasElement }): Promise<void> {
  if (!m.maps || !m.id) {
    c.canvas.replaceWith(errorBox(m.error ? `${m.error.message} (HTTP ${m.error.status})` : 'not computed'));
    c.link.classList.add('failed');
    return;
  }
  try {
    const img = await thumbImage(m.thumb ?? (await ctx.data.image(r.run, m.id, 'thumb')));
    if (!ctx.alive()) return;
    drawOverlay(c.canvas, img, all.grid, m.maps.q, m.maps.k, { normalization: all.normalization });
    c.canvas.classList.remove('placeholder-canvas');
    if (head.modality === 'vision' && ctx.data.live) c.link.setAttribute('href', href({ view: 'image', run: r.run, layer: r.layer, head: r.head, mode: r.mode, img: m.id, sign: m.sign }));
    c.link.classList.add('ready');
    c.link.title = `${m.label}: recomputed max Q ${fmt(m.maps.qmax, 3)}, max K ${fmt(m.maps.kmax, 3)}, S ${fmt(m.maps.score, 3)} (scan: ${fmt(m.scan.score, 3)})`;
  } catch (e) {
    if (!ctx.alive()) return;
    c.canvas.replaceWith(errorBox(errorText(e)));
    c.link.classList.add('failed');
  }
}

/** The card's image: a URL from the maps reply (decoded off the main thread), or bytes from the data source. */
async function thumbImage(src: string | Blob): Promise<HTMLImageElement> {
  if (typeof src !== 'string') return loadImage(src);
  const img = new Image();
  img.src = src;
  await img.decode();
  return img;
}

/** File name without the extension and an ImageNet synset prefix (n01440764_tench.JPEG → tench). */
function shortLabel(label: string): string {
  return label.replace(/\.(jpe?g|png|webp|tiff?|bmp|gif|avif)$/i, '').replace(/^n\d{8}_/, '').replace(/_/g, ' ');
}
