/**
 * The static site's data files are scripts, each calling `qkscopeData(key, value)` (written by
 * src/jobs/export.ts): browsers refuse fetch() of file:// URLs but run <script src>, so the same
 * files work from a folder on disk and from any static host.
 */
import { ApiError } from '../data.js';

type Waiter = { resolve: (v: unknown) => void; reject: (e: Error) => void };

const values = new Map<string, unknown>();
const waiting = new Map<string, Waiter[]>();
const inFlight = new Map<string, Promise<unknown>>();
let base = 'data/';

declare global {
  interface Window {
    qkscopeData?: (key: string, value: unknown) => void;
    QKSCOPE_STATIC?: { data?: string } | boolean;
  }
}

export function installRegistry(dataBase: string): void {
  base = dataBase;
  window.qkscopeData = (key, value) => {
    values.set(key, value);
    for (const w of waiting.get(key) ?? []) w.resolve(value);
    waiting.delete(key);
  };
}

/**
 * The value of data file `key` (data/KEY.js), loading the script once. `keep: false` forgets the
 * value once delivered (the model and wasm chunks: tens of MB each).
 */
export function dataFile<T>(key: string, keep = true): Promise<T> {
  if (values.has(key)) {
    const v = values.get(key) as T;
    if (!keep) values.delete(key);
    return Promise.resolve(v);
  }
  let p = inFlight.get(key);
  if (!p) {
    p = new Promise<unknown>((resolve, reject) => {
      const list = waiting.get(key) ?? [];
      list.push({ resolve, reject });
      waiting.set(key, list);
      const s = document.createElement('script');
      s.src = `${base}${key.split('/').map(encodeURIComponent).join('/')}.js`;
      s.async = true;
      s.onerror = () => {
        waiting.delete(key);
        reject(new ApiError(404, `${base}${key}.js is missing from this site (exported without it?)`));
      };
      s.onload = () => {
        s.remove();
        if (!values.has(key)) {
          waiting.delete(key);
          reject(new ApiError(500, `${base}${key}.js did not register its data`));
        }
      };
      document.head.append(s);
    });
    inFlight.set(key, p);
    p.then(
      () => inFlight.delete(key),
      () => inFlight.delete(key),
    );
  }
  return p.then((v) => {
    if (!keep) values.delete(key);
    return v as T;
  });
}

/** Bytes of a base64 string (the engine's decoder where it has one: tens of MB for a model). */
export function fromBase64(s: string): Uint8Array {
  const native = (Uint8Array as unknown as { fromBase64?: (s: string) => Uint8Array }).fromBase64;
  if (native) return native(s);
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Little-endian float32 values of a base64 string. */
export function float32s(s: string): Float32Array {
  const b = fromBase64(s);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

/** A multi-chunk binary (the model, the wasm): chunks loaded in order, concatenated. */
export async function chunkedBytes(prefix: string, chunks: number, onProgress?: (done: number, total: number) => void): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < chunks; i++) {
    parts.push(fromBase64(await dataFile<string>(`${prefix}.${i}`, false)));
    onProgress?.(i + 1, chunks);
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
