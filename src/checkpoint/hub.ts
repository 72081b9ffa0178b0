/**
 * Hugging Face Hub models through the local cache, in exactly Python huggingface_hub's layout
 * and environment variables, so files we download are found by Python afterwards and vice versa:
 *
 *   <cache>/models--{org}--{name}/refs/{revision}          commit sha
 *   <cache>/models--{org}--{name}/snapshots/{sha}/{file}   relative symlink → ../../blobs/{etag}
 *   <cache>/models--{org}--{name}/blobs/{etag}             content ({etag}.incomplete while downloading)
 *   <cache>/models--{org}--{name}/.no_exist/{sha}/{file}   empty marker: the file does not exist
 *
 * A small fetch-based downloader rather than @huggingface/hub's downloadFileToCacheDir: that one
 * needs the paths-info API, names snapshots after the file's last commit instead of the
 * revision's commit, and never writes refs/, so Python would not find its files.
 */
import { existsSync, lstatSync, readFileSync, readdirSync, copyFileSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { readRegularFile } from './files.js';
import { UserError } from '../errors.js';
import type { Progress } from '../progress.js';
import { downloadResumable } from './download.js';
import { VERSION } from '../version.js';
import { ensureDir } from '../io/fs.js';

export interface HubOptions {
  /** Use only the cache (also HF_HUB_OFFLINE=1). */
  offline?: boolean;
  revision?: string;
  /** Overrides HF_HUB_CACHE and friends. */
  cacheDir?: string;
  /** Overrides HF_ENDPOINT. */
  endpoint?: string;
  /** Overrides HF_TOKEN and the token file. */
  token?: string;
  /** Environment to read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Show download progress on stderr (default: when stderr is a terminal). */
  progress?: boolean;
  /** Report download progress here instead (a job's progress display). */
  reporter?: Progress;
}

export interface HubSnapshot {
  repoId: string;
  revision: string;
  commit: string;
  /** The snapshot folder: config.json and the weights as files (symlinks into blobs/). */
  dir: string;
  /** The weight files present, relative to dir (one file, or an index and its shards). */
  weights: string[];
}

const SHA = /^[0-9a-f]{40}$/;
const WEIGHTS = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'open_clip_pytorch_model.bin'];

/** `org/name[@revision]` → parts, or null when the string is not shaped like a hub id. */
export function parseHubId(input: string): { repoId: string; revision?: string } | null {
  const at = input.indexOf('@');
  const repoId = at >= 0 ? input.slice(0, at) : input;
  const revision = at >= 0 ? input.slice(at + 1) : undefined;
  if (!/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(repoId) || repoId.length > 96 || /--|\.\./.test(repoId)) return null;
  if (revision !== undefined && !/^[\w./-]+$/.test(revision)) return null;
  return { repoId, revision };
}

function expand(p: string): string {
  return p.startsWith('~') ? join(homedir(), p.slice(1)) : p;
}

/** huggingface_hub's HF_HOME: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  return expand(env.HF_HOME || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'huggingface'));
}

/** huggingface_hub's HF_HUB_CACHE: $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return expand(env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE || join(hfHome(env), 'hub'));
}

function isTrue(v: string | undefined): boolean {
  return ['1', 'ON', 'YES', 'TRUE'].includes((v ?? '').toUpperCase());
}

export function hubOfflineFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return isTrue(env.HF_HUB_OFFLINE) || isTrue(env.TRANSFORMERS_OFFLINE);
}

function hubToken(env: NodeJS.ProcessEnv): string | undefined {
  const t = env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN;
  if (t) return t.trim();
  try {
    return readFileSync(env.HF_TOKEN_PATH || join(hfHome(env), 'token'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

class NetworkError extends Error {}

/** The hub does not know the repo (or hides it: private or gated, without a token). */
export class HubRepoNotFound extends UserError {}

interface Ctx {
  repoId: string;
  repoDir: string;
  cacheDir: string;
  endpoint: string;
  token?: string;
  progress: boolean;
  reporter?: Progress;
  headTimeoutMs: number;
}

function hubContext(repoId: string, opts: HubOptions, env: NodeJS.ProcessEnv): Ctx {
  const cacheDir = opts.cacheDir ?? hubCacheDir(env);
  return {
    repoId,
    repoDir: join(cacheDir, `models--${repoId.replace('/', '--')}`),
    cacheDir,
    endpoint: (opts.endpoint ?? env.HF_ENDPOINT ?? '').replace(/\/+$/, '') || 'https://huggingface.co',
    token: opts.token ?? hubToken(env),
    progress: opts.progress ?? process.stderr.isTTY === true,
    reporter: opts.reporter,
    headTimeoutMs: 1000 * (Number(env.HF_HUB_ETAG_TIMEOUT) || 10),
  };
}

/** Resolves `org/name[@rev]` to a snapshot folder with config and weights, downloading if allowed. */
export async function resolveHubModel(id: string, opts: HubOptions = {}): Promise<HubSnapshot> {
  const parsed = parseHubId(id);
  if (!parsed) throw new UserError(`${id}: not a Hugging Face model id; give org/name or org/name@revision`);
  if (parsed.revision && opts.revision && parsed.revision !== opts.revision) {
    throw new UserError(`${id}: the id names revision ${parsed.revision} but --revision says ${opts.revision}; give one`);
  }
  const env = opts.env ?? process.env;
  const revision = opts.revision ?? parsed.revision ?? 'main';
  const ctx = hubContext(parsed.repoId, opts, env);
  const cacheDir = ctx.cacheDir;
  const envOffline = hubOfflineFromEnv(env);
  if (opts.offline || envOffline) return fromCache(ctx, revision, opts.offline ? 'drop --offline' : 'unset HF_HUB_OFFLINE');
  try {
    return await download(ctx, revision);
  } catch (e) {
    if (!(e instanceof NetworkError)) throw e;
    // As huggingface_hub does: no connection, but a complete cached copy will do.
    try {
      return fromCache(ctx, revision, '');
    } catch {
      throw new UserError(
        `${ctx.repoId}: cannot reach ${ctx.endpoint} (${e.message}) and the model is not in the cache (${cacheDir}); check the network or HF_ENDPOINT, or download it with \`huggingface-cli download ${ctx.repoId}\``,
      );
    }
  }
}

function fromCache(ctx: Ctx, revision: string, fix: string): HubSnapshot {
  const how = `download it with \`huggingface-cli download ${ctx.repoId}\`${fix ? ` or ${fix}` : ''}`;
  let commit = revision;
  if (!SHA.test(revision)) {
    try {
      commit = readFileSync(join(ctx.repoDir, 'refs', revision), 'utf8').trim();
    } catch {
      throw new UserError(`${ctx.repoId}: revision ${revision} is not in the Hugging Face cache (${ctx.cacheDir}); ${how}`);
    }
  }
  const dir = join(ctx.repoDir, 'snapshots', commit);
  const weights = weightsIn(dir);
  if (!weights) {
    throw new UserError(`${ctx.repoId}@${revision}: model weights (model.safetensors or pytorch_model.bin) are not in the Hugging Face cache (${dir}); ${how}`);
  }
  return { repoId: ctx.repoId, revision, commit, dir, weights };
}

/** The weight files in a snapshot folder (existsSync follows the symlinks: a dangling one is absent). */
function weightsIn(dir: string): string[] | null {
  for (const w of WEIGHTS) {
    if (!existsSync(join(dir, w))) continue;
    if (w.endsWith('.index.json')) {
      const shards = shardsOf(join(dir, w));
      if (shards && shards.every((s) => existsSync(join(dir, s)))) return [w, ...shards];
      continue;
    }
    return [w];
  }
  return null;
}

function shardsOf(indexPath: string): string[] | null {
  try {
    // Bounded and regular-file only: a cached index is downloaded data like any other.
    const wm = JSON.parse(readRegularFile(indexPath, 64 * 2 ** 20, 'safetensors index').toString('utf8')).weight_map as Record<string, string>;
    return [...new Set(Object.values(wm))].filter((f) => typeof f === 'string' && !f.startsWith('/') && !f.includes('..'));
  } catch {
    return null;
  }
}

async function download(ctx: Ctx, revision: string): Promise<HubSnapshot> {
  // The first answer pins the commit; later files are fetched at that commit, so a push in
  // between cannot mix two versions of the model.
  let rev = revision;
  let commit: string | undefined;
  const get = async (file: string) => {
    const r = await fetchToCache(ctx, file, rev);
    if (r.commit && !commit) {
      commit = r.commit;
      if (revision !== commit) writeRef(ctx, revision, commit);
      rev = commit;
    }
    return r.path;
  };
  await get('config.json');
  await get('preprocessor_config.json');
  const weights: string[] = [];
  for (const w of WEIGHTS) {
    const p = await get(w);
    if (!p) continue;
    weights.push(w);
    if (w.endsWith('.index.json')) {
      const shards = shardsOf(p);
      if (!shards) throw new UserError(`${p}: the index downloaded from ${ctx.repoId} is not valid JSON with a weight_map; try again later`);
      for (const s of shards) {
        if (!(await get(s))) throw new UserError(`${ctx.repoId}: shard ${s} listed in ${w} is missing from the repository`);
        weights.push(s);
      }
    }
    break;
  }
  if (!commit) throw new UserError(`${ctx.endpoint}: the server did not say which commit it served (no X-Repo-Commit header); is HF_ENDPOINT a Hugging Face hub?`);
  const dir = join(ctx.repoDir, 'snapshots', commit);
  if (!weights.length) {
    throw new UserError(`${ctx.repoId}@${revision}: the repository has no model.safetensors, model.safetensors.index.json or pytorch_model.bin; pick a model repository with weights`);
  }
  return { repoId: ctx.repoId, revision, commit, dir, weights };
}

function writeRef(ctx: Ctx, revision: string, commit: string): void {
  const ref = join(ctx.repoDir, 'refs', revision);
  ensureDir(dirname(ref));
  writeFileSync(ref, commit);
}

function headers(ctx: Ctx, url: string): Record<string, string> {
  const h: Record<string, string> = { 'user-agent': `qkscope/${VERSION}` };
  // Only the hub gets the token, not the CDN it redirects to.
  if (ctx.token && new URL(url).origin === new URL(ctx.endpoint).origin) h.authorization = `Bearer ${ctx.token}`;
  return h;
}

async function request(ctx: Ctx, url: string, init: RequestInit & { timeoutMs?: number }): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: init.timeoutMs ? AbortSignal.timeout(init.timeoutMs) : undefined });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new NetworkError(cause?.code ?? cause?.message ?? (e as Error).message);
  }
}

function normalizeEtag(e: string | null): string | null {
  return e ? e.replace(/^W\//, '').replace(/^"|"$/g, '') : null;
}

/**
 * HEAD of one file of the repo, following only relative redirects (a renamed repo); an absolute
 * one points to the CDN and already carries the metadata we need (X-Linked-Size, -Etag).
 */
async function headFile(ctx: Ctx, file: string, revision: string): Promise<{ res: Response; url: string }> {
  let url = `${ctx.endpoint}/${ctx.repoId}/resolve/${encodeURIComponent(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
  let res: Response;
  for (let hop = 0; ; hop++) {
    res = await request(ctx, url, { method: 'HEAD', redirect: 'manual', headers: { ...headers(ctx, url), 'accept-encoding': 'identity' }, timeoutMs: ctx.headTimeoutMs });
    const loc = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && loc && !/^[a-z]+:\/\//i.test(loc) && hop < 10) url = new URL(loc, url).toString();
    else return { res, url };
  }
}

export interface HubFile {
  file: string;
  /** Bytes (null when the hub does not say). */
  size: number | null;
  /** Already in the cache. */
  cached: boolean;
}

/**
 * The weight files `resolveHubModel` would fetch for `id`, their sizes and whether they are
 * cached, before downloading anything large: HEAD requests (a sharded model's small index is
 * fetched into the cache to list its shards). Offline: what the cache holds (empty if nothing).
 */
export async function hubFiles(id: string, opts: HubOptions = {}): Promise<{ repoId: string; files: HubFile[] }> {
  const parsed = parseHubId(id);
  if (!parsed) throw new UserError(`${id}: not a Hugging Face model id; give org/name or org/name@revision`);
  const env = opts.env ?? process.env;
  const revision = opts.revision ?? parsed.revision ?? 'main';
  const ctx = hubContext(parsed.repoId, opts, env);
  const local = (): HubFile[] => {
    try {
      const snap = fromCache(ctx, revision, '');
      return snap.weights.map((w) => ({ file: w, size: statSync(join(snap.dir, w)).size, cached: true }));
    } catch {
      return [];
    }
  };
  if (opts.offline || hubOfflineFromEnv(env)) return { repoId: ctx.repoId, files: local() };
  const info = async (file: string): Promise<HubFile | null> => {
    const { res } = await headFile(ctx, file, revision);
    const code = res.headers.get('x-error-code');
    if (res.status === 404 && (code === 'EntryNotFound' || !code)) return null;
    if (code === 'RepoNotFound' || res.status === 401 || res.status === 403) {
      throw new HubRepoNotFound(`${ctx.repoId} is not found or not accessible on ${ctx.endpoint} (HTTP ${res.status}; set HF_TOKEN for a private or gated model)`);
    }
    if (res.status >= 400) throw new UserError(`${ctx.repoId}: ${ctx.endpoint} answered HTTP ${res.status} for ${file}; try again later`);
    const size = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length') ?? NaN);
    const commit = res.headers.get('x-repo-commit');
    const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
    const cached = !!((commit && existsSync(join(ctx.repoDir, 'snapshots', commit, file))) || (etag && existsSync(join(ctx.repoDir, 'blobs', etag))));
    return { file, size: Number.isFinite(size) ? size : null, cached };
  };
  try {
    for (const w of WEIGHTS) {
      const f = await info(w);
      if (!f) continue;
      if (!w.endsWith('.index.json')) return { repoId: ctx.repoId, files: [f] };
      const idx = await fetchToCache(ctx, w, revision);
      const shards = idx.path ? shardsOf(idx.path) : null;
      if (!shards) throw new UserError(`${ctx.repoId}: ${w} is not valid JSON with a weight_map; try again later`);
      const files = [f];
      for (const sh of shards) {
        const x = await info(sh);
        if (x) files.push(x);
      }
      return { repoId: ctx.repoId, files };
    }
    return { repoId: ctx.repoId, files: [] };
  } catch (e) {
    if (e instanceof NetworkError) return { repoId: ctx.repoId, files: local() };
    throw e;
  }
}

/**
 * One file of the repo at `revision` into the cache: its snapshot path, or null when the repo
 * does not have it (a 404 for the file, recorded in .no_exist/ as huggingface_hub does).
 */
async function fetchToCache(ctx: Ctx, file: string, revision: string): Promise<{ path: string | null; commit?: string }> {
  if (SHA.test(revision)) {
    const cached = join(ctx.repoDir, 'snapshots', revision, file);
    if (existsSync(cached)) return { path: cached, commit: revision };
    if (existsSync(join(ctx.repoDir, '.no_exist', revision, file))) return { path: null, commit: revision };
  }
  const { res, url } = await headFile(ctx, file, revision);
  const commit = res.headers.get('x-repo-commit') ?? undefined;
  const code = res.headers.get('x-error-code');
  if (res.status === 404 && (code === 'EntryNotFound' || !code)) {
    if (commit) {
      const marker = join(ctx.repoDir, '.no_exist', commit, file);
      ensureDir(dirname(marker));
      writeFileSync(marker, '');
    }
    return { path: null, commit };
  }
  if (code === 'RepoNotFound' || res.status === 401 || res.status === 403) {
    throw new HubRepoNotFound(`${ctx.repoId} is not found or not accessible on ${ctx.endpoint} (HTTP ${res.status}; set HF_TOKEN for a private or gated model)`);
  }
  if (code === 'RevisionNotFound') throw new UserError(`${ctx.repoId}: revision ${revision} does not exist; check --revision`);
  if (res.status >= 400) throw new UserError(`${ctx.repoId}: ${ctx.endpoint} answered HTTP ${res.status} for ${file}; try again later`);
  const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
  if (!commit || !etag) throw new UserError(`${ctx.endpoint}: no X-Repo-Commit or ETag header for ${file}; is HF_ENDPOINT a Hugging Face hub?`);
  const size = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length') ?? NaN);
  const pointer = join(ctx.repoDir, 'snapshots', commit, file);
  if (existsSync(pointer)) return { path: pointer, commit };
  const blob = join(ctx.repoDir, 'blobs', etag);
  if (!existsSync(blob)) {
    const loc = res.status >= 300 && res.status < 400 ? res.headers.get('location') : null;
    await downloadBlob(ctx, loc ? new URL(loc, url).toString() : url, blob, file, size);
  }
  link(blob, pointer);
  return { path: pointer, commit };
}

/**
 * Streams into `<blob>.incomplete` (resumed with a Range request when a previous run left one),
 * renamed only when complete: an interrupted run never leaves a bad blob (download.ts).
 */
async function downloadBlob(ctx: Ctx, url: string, blob: string, file: string, size: number): Promise<void> {
  const progress = ctx.reporter ?? (ctx.progress ? stderrProgress() : undefined);
  await downloadResumable(url, blob, { size: Number.isFinite(size) ? size : null, headers: headers(ctx, url), progress, label: `${ctx.repoId} ${file}`, owner: ctx.repoId, file });
}

/** A one-line MB counter on stderr (a terminal, no job display). */
function stderrProgress(): Progress {
  let label = '';
  let total = 0;
  let done = 0;
  return {
    start(l, t, o) {
      label = l;
      total = t;
      done = o?.done ?? 0;
    },
    advance(n) {
      done += n;
      process.stderr.write(`\r${label}: ${done}${total ? `/${total}` : ''} MB`);
    },
    note(m) {
      process.stderr.write(`${m}\n`);
    },
    end() {
      if (done) process.stderr.write('\n');
    },
  };
}

function link(blob: string, pointer: string): void {
  ensureDir(dirname(pointer));
  try {
    if (lstatSync(pointer, { throwIfNoEntry: false })) unlinkSync(pointer); // a dangling link
    symlinkSync(relative(dirname(pointer), blob), pointer);
  } catch {
    copyFileSync(blob, pointer); // no symlinks (Windows without developer mode): huggingface_hub copies too
  }
}

/** Cached repos (for messages and tools): `org/name` of every models--org--name folder. */
export function cachedRepos(env: NodeJS.ProcessEnv = process.env): string[] {
  try {
    return readdirSync(hubCacheDir(env))
      .filter((d) => d.startsWith('models--'))
      .map((d) => d.slice(8).replace('--', '/'));
  } catch {
    return [];
  }
}
