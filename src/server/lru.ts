/**
 * A least-recently-used map bounded by a total cost (bytes, or 1 per entry), for the server's
 * caches: forward passes, per-layer activations, thumbnails, computed replies. Promises may be
 * stored (concurrent requests share one computation); a rejected one should be deleted by the
 * caller.
 */
export class Lru<K, V> {
  private map = new Map<K, { v: V; cost: number }>();
  private total = 0;

  constructor(
    readonly maxCost: number,
    private readonly costOf: (v: V) => number = () => 1,
    private readonly onEvict?: (k: K, v: V) => void,
  ) {}

  get size(): number {
    return this.map.size;
  }

  get cost(): number {
    return this.total;
  }

  get(k: K): V | undefined {
    const e = this.map.get(k);
    if (!e) return undefined;
    this.map.delete(k);
    this.map.set(k, e);
    return e.v;
  }

  has(k: K): boolean {
    return this.map.has(k);
  }

  /** Stores `v`; evicts the least recently used entries past the budget (never the new one). */
  set(k: K, v: V, cost = this.costOf(v)): V {
    this.delete(k);
    this.map.set(k, { v, cost });
    this.total += cost;
    for (const [key, e] of this.map) {
      if (this.total <= this.maxCost || key === k) break;
      this.map.delete(key);
      this.total -= e.cost;
      this.onEvict?.(key, e.v);
    }
    return v;
  }

  /** Updates the cost of an entry (a promise whose value is now known). */
  resize(k: K, cost: number): void {
    const e = this.map.get(k);
    if (e) this.set(k, e.v, cost);
  }

  delete(k: K): void {
    const e = this.map.get(k);
    if (!e) return;
    this.map.delete(k);
    this.total -= e.cost;
  }

  values(): V[] {
    return [...this.map.values()].map((e) => e.v);
  }

  clear(): void {
    if (this.onEvict) for (const [k, e] of this.map) this.onEvict(k, e.v);
    this.map.clear();
    this.total = 0;
  }
}

/** Memoises an async computation in an LRU: one computation per key at a time, failures not kept. */
export function memo<K, V>(cache: Lru<K, Promise<V>>, key: K, compute: () => Promise<V>, costOf?: (v: V) => number): Promise<V> {
  const hit = cache.get(key);
  if (hit) return hit;
  const p = compute();
  cache.set(key, p, 1);
  p.then(
    (v) => {
      if (costOf && cache.get(key) === p) cache.resize(key, costOf(v));
    },
    () => {
      if (cache.get(key) === p) cache.delete(key);
    },
  );
  return p;
}
