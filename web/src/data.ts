/**
 * Where the explorer's data comes from: ONE interface for every view. `serveSource()` reads the
 * JSON API of `qkscope serve` (docs/API.md); a static export can implement the same interface
 * over precomputed files (and a model running in the page) without touching the views.
 * Payload types come from src/api-types.ts, shared with the server.
 */
import type * as A from '../../src/api-types.js';

export type * from '../../src/api-types.js';

/** An error reply (or no reply): its HTTP status (0: the server could not be reached) and message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** How an error is shown: the API's status and message as they are. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.status ? `${e.message} (HTTP ${e.status})` : e.message;
  return e instanceof Error ? e.message : String(e);
}

export interface DataSource {
  /** 'serve': a running `qkscope serve`; 'static': precomputed files. */
  readonly kind: 'serve' | 'static';
  /** Whether images can be uploaded and picked (live computations). */
  readonly live: boolean;
  /** A sentence the Image view shows under its picker (a static site: where the model runs, what differs). */
  readonly imageNote?: string;
  runs(): Promise<A.RunList>;
  models(): Promise<A.ModelList>;
  head(run: string, layer: number, head: number): Promise<A.HeadDetail>;
  mode(run: string, layer: number, head: number, mode: number): Promise<A.ModeDetail>;
  /** Every top image of a mode (both signs) with its maps and crops (`thumb` pixels on a side). */
  modeMaps(run: string, layer: number, head: number, mode: number, thumb: number): Promise<A.ModeMaps>;
  anisotropy(run: string): Promise<A.Anisotropy>;
  /** The image as the run's model sees it: 'input' full size (PNG), 'thumb' small (JPEG). */
  image(run: string, image: string, size: 'input' | 'thumb'): Promise<Blob>;
  upload(file: Blob, name: string): Promise<A.UploadResult>;
  gallery(run: string): Promise<A.Gallery>;
  pick(run: string, key: string): Promise<A.UploadResult>;
  imageMaps(run: string, image: string, layer: number, head: number, mode: number, sign: 1 | -1): Promise<A.Maps>;
  imageModes(run: string, image: string, layer: number, head: number): Promise<A.ImageModes>;
  decomposition(run: string, image: string, layer: number, head: number, patch: number, top: number): Promise<A.Decomposition>;
}

async function reply(path: string, init?: RequestInit): Promise<Response> {
  let r: Response;
  try {
    r = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'cannot reach the qkscope server (is `qkscope serve` still running?)');
  }
  if (r.ok) return r;
  const text = await r.text();
  let msg = `HTTP ${r.status} from ${path}`;
  try {
    msg = (JSON.parse(text) as Partial<A.ApiErrorBody>).error ?? msg;
  } catch {
    // not JSON: keep the status line
  }
  throw new ApiError(r.status, msg);
}

async function json<T>(path: string, init?: RequestInit): Promise<T> {
  const r = await reply(path, init);
  try {
    return (await r.json()) as T;
  } catch {
    throw new ApiError(r.status, `unexpected reply from ${path} (not JSON)`);
  }
}

/** Replies that do not change while the page is open (a run's weights, its scan), kept for instant repeat visits. */
class Memo {
  private map = new Map<string, Promise<unknown>>();
  constructor(private readonly size: number) {}
  get<T>(key: string, load: () => Promise<T>): Promise<T> {
    let p = this.map.get(key) as Promise<T> | undefined;
    if (p) {
      this.map.delete(key);
      this.map.set(key, p);
      return p;
    }
    p = load();
    this.map.set(key, p);
    p.catch(() => this.map.delete(key));
    while (this.map.size > this.size) this.map.delete(this.map.keys().next().value!);
    return p;
  }
}

const enc = encodeURIComponent;

/** The `qkscope serve` JSON API, relative to the page. */
export function serveSource(): DataSource {
  const run = (id: string) => `api/runs/${enc(id)}`;
  const memo = new Memo(256);
  const sign = (s: 1 | -1) => (s > 0 ? 'pos' : 'neg');
  return {
    kind: 'serve',
    live: true,
    runs: () => json('api/runs'),
    models: () => json('api/models'),
    head: (id, l, h) => memo.get(`head|${id}|${l}|${h}`, () => json(`${run(id)}/heads/${l}/${h}`)),
    mode: (id, l, h, n) => memo.get(`mode|${id}|${l}|${h}|${n}`, () => json(`${run(id)}/modes/${l}/${h}/${n}`)),
    modeMaps: (id, l, h, n, thumb) => memo.get(`maps|${id}|${l}|${h}|${n}|${thumb}`, () => json(`${run(id)}/modes/${l}/${h}/${n}/maps?thumb=${thumb}`)),
    anisotropy: (id) => memo.get(`aniso|${id}`, () => json(`${run(id)}/anisotropy`)),
    image: (id, img, size) => memo.get(`img|${id}|${img}|${size}`, async () => (await reply(`${run(id)}/images/${enc(img)}/${size === 'thumb' ? 'thumb.jpg' : 'input.png'}`)).blob()),
    upload: (file, name) =>
      json('api/images', { method: 'POST', body: file, headers: { 'content-type': file.type || 'application/octet-stream', 'x-filename': name.replace(/[^\w .()-]/g, '') } }),
    gallery: (id) => json(`api/gallery?run=${enc(id)}`),
    pick: (id, key) => json(`api/gallery/${enc(key)}?run=${enc(id)}`, { method: 'POST' }),
    imageMaps: (id, img, l, h, n, s) => memo.get(`imaps|${id}|${img}|${l}|${h}|${n}|${s}`, () => json(`${run(id)}/images/${enc(img)}/maps?layer=${l}&head=${h}&mode=${n}&sign=${sign(s)}`)),
    imageModes: (id, img, l, h) => memo.get(`imodes|${id}|${img}|${l}|${h}`, () => json(`${run(id)}/images/${enc(img)}/modes?layer=${l}&head=${h}`)),
    decomposition: (id, img, l, h, p, top) => memo.get(`dec|${id}|${img}|${l}|${h}|${p}|${top}`, () => json(`${run(id)}/images/${enc(img)}/decomposition?layer=${l}&head=${h}&patch=${p}&top=${top}`)),
  };
}
