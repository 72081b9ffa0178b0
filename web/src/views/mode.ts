/** Mode view: a mode's numbers and its top images for both signs, with query/key overlays. */
import { api, type TopEntry } from '../api.js';
import type { ViewContext } from '../main.js';
import { drawOverlay, hiDpiCanvas, loadImage, overlayLegend } from '../overlay.js';
import { card, clear, errorBox, fmt, fmtSigned, h, href, note } from '../ui.js';

type ModeRoute = { run: string; layer: number; head: number; mode: number };

export async function renderMode(ctx: ViewContext, r: ModeRoute): Promise<void> {
  const [d, head] = await Promise.all([api.mode(r.run, r.layer, r.head, r.mode), api.head(r.run, r.layer, r.head)]);
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
        h('a', { class: 'btn primary', href: href({ view: 'image', run: r.run, layer: r.layer, head: r.head, mode: r.mode, sign: 1 }) }, 'Try on an image →'),
      ),
    ),
    h(
      'div',
      { class: 'stats' },
      statBox('cosine uₙ·vₙ', fmtSigned(d.cosine), where, 'mode-cosine'),
      statBox('σₙ', fmt(d.sigma), `σₙ/√dₕ = ${fmt(d.sigma_scaled)} (logit gain)`),
      statBox('relative gap', fmt(d.rel_gap, 3), d.rel_gap < 0.01 ? '⚠ near-degenerate: only the span is identifiable' : 'identifiable'),
      statBox('rank in head', `${r.mode + 1} of ${dh}`, 'by σ, descending'),
    ),
  );
  if (!d.has_scan) {
    ctx.root.append(
      card(
        'Top images',
        note(h('span', null, 'This run has no scan database (run.db), so there are no top images. You can still ', h('a', { href: href({ view: 'image', run: r.run, layer: r.layer, head: r.head, mode: r.mode, sign: 1 }) }, 'see this mode on any image'), '.')),
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
    ctx.root.append(note(`Scan: ${bits.join(' · ')}.`));
    if (sc.embedding === 'residual') {
      ctx.root.append(errorBox('This scan ranked images by projecting the residual stream h (--embedding residual); the maps drawn here project x = LN(h), the space of the modes, so they can differ from what the scan scored.'));
    }
    if (sc.layers && !sc.layers.includes(r.layer)) {
      ctx.root.append(card('Top images', note(`Layer ${r.layer} was not scanned (scanned layers: ${sc.layers.join(', ')}).`)));
      return;
    }
  }
  const legend = overlayLegend();
  for (const sign of [1, -1] as const) {
    const entries = d.top.filter((t) => t.sign === sign);
    const title = sign > 0 ? 'Positive sign (uₙ, vₙ)' : 'Negative sign (−uₙ, −vₙ)';
    const body = h('div', { class: 'tops', 'data-sign': sign > 0 ? 'pos' : 'neg' });
    const sec = card(title, body);
    if (sign > 0) sec.querySelector('h2')!.after(legend);
    ctx.root.append(sec);
    if (entries.length === 0) {
      body.append(note('No top images for this sign in the scan.'));
      continue;
    }
    for (const t of entries) body.append(topCard(ctx, r, t));
  }
  ctx.root.append(note('Score S = maxₜ Q(t) × maxₜ K(t) (METHOD.md §5). Maps: Q(t) = ±x_t·uₙ in red, K(t) = ±x_t·vₙ in cyan, each scaled to its own maximum; white where both are high. Click an image to explore it.'));
}

/** File name without the extension and an ImageNet synset prefix (n01440764_tench.JPEG → tench). */
function shortLabel(label: string): string {
  return label.replace(/\.(jpe?g|png|webp|tiff?|bmp|gif|avif)$/i, '').replace(/^n\d{8}_/, '').replace(/_/g, ' ');
}

function statBox(label: string, value: string, sub: string, id?: string): HTMLElement {
  return h('div', { class: 'stat', 'data-testid': id ?? null }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), h('div', { class: 'sub' }, sub));
}

function topCard(ctx: ViewContext, r: ModeRoute, t: TopEntry): HTMLElement {
  const size = 168;
  const canvas = hiDpiCanvas(size);
  const link = h('a', { class: 'top-card', 'data-rank': t.rank, 'data-sign': t.sign > 0 ? 'pos' : 'neg', href: '#' }, canvas);
  const caption = h(
    'div',
    { class: 'caption' },
    h('div', { class: 'title', title: t.label }, `#${t.rank + 1} ${shortLabel(t.label)}`),
    h('div', null, `S = ${fmt(t.score, 2)}`),
    h('div', { class: 'qk' }, h('span', { class: 'q' }, `Q ${fmt(t.qmax, 2)}`), ' · ', h('span', { class: 'k' }, `K ${fmt(t.kmax, 2)}`)),
  );
  link.append(caption);
  link.addEventListener('click', (e) => e.preventDefault());
  void (async () => {
    try {
      const m = await api.topMaps(r.run, r.layer, r.head, r.mode, t.sign, t.rank);
      if (!ctx.alive()) return;
      const img = await loadImage(api.inputUrl(r.run, m.image.id));
      drawOverlay(canvas, img, m.grid, m.q, m.k);
      link.setAttribute('href', href({ view: 'image', run: r.run, layer: r.layer, head: r.head, mode: r.mode, img: m.image.id, sign: t.sign }));
      link.addEventListener('click', () => (location.hash = link.getAttribute('href')!));
      link.classList.add('ready');
      link.title = `${t.label}: live maps, max Q ${fmt(m.qmax, 3)}, max K ${fmt(m.kmax, 3)}`;
    } catch (e) {
      canvas.replaceWith(errorBox((e as Error).message));
    }
  })();
  return link;
}
