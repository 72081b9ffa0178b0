/**
 * The three hot float64 kernels of the thin SVD, in two implementations with identical
 * semantics: WebAssembly f64x2 SIMD (generated at load time by `wasm-asm.ts`) and plain JS
 * (the fallback when the runtime lacks wasm SIMD, and the reference the tests compare with).
 *
 * All of them work on one Float64Array "heap" (the wasm linear memory, or a JS array) and take
 * offsets in doubles. Shapes carry padding requirements so the SIMD loops need no remainder
 * code: callers pad with zero rows/columns (zeros do not change any dot product).
 *
 *   gemmNT(a,b,c, m,n,k, ldc, sym)  C[i,j] = Σ_p A[i,p]·B[j,p]  (A m×k, B n×k, both row-major
 *        along p: every entry is a contiguous dot product). m%4 = 0, n%2 = 0, k%2 = 0. The
 *        block is 4 rows × 2 columns × 2 SIMD lanes: 8 accumulators stay in registers and each
 *        loaded vector is used 2–4 times. sym=1 computes only the 4×2 blocks with j ≥ i
 *        (for a Gram matrix A·Aᵀ: the caller mirrors the upper triangle).
 *   gemmNN(at,b,c, m,n,k)            C = A·B with A m×k given TRANSPOSED (at: k×m), B k×n,
 *        C m×n. m%4 = 0, n%4 = 0. Vectorised along the rows of B: each step broadcasts four
 *        A entries (contiguous in Aᵀ, hence static offsets) against two vectors of B.
 *   jacobiSweep(x,y,nrm, n,ld, tol)  one cyclic sweep of one-sided (Hestenes) Jacobi on the n
 *        rows of X (row stride ld, ld%8 = 0), applying the same rotations to the rows of Y;
 *        nrm[i] holds ‖x_i‖² and is kept exact (recomputed from the rotated values, so no
 *        drift from Rutishauser's update formulas). Pair (i,j) is rotated when
 *        |x_i·x_j| > tol·‖x_i‖‖x_j‖. De Rijk's pivoting: before row i pairs with the rows below
 *        it, the longest remaining row is swapped into position i (X, Y and nrm), which saves
 *        ~20% of the rotations. Returns the number of rotations; 0 means converged.
 *        Cost per rotated pair ≈ 5·ld flops-pairs; the loops are unrolled with independent
 *        accumulators because a single add chain (4-cycle latency) would bound them.
 */
import {
  Code,
  F64,
  Fn,
  I32,
  V128,
  add32,
  c,
  encodeModule,
  f64,
  fabs,
  fadd,
  fcopysign,
  fdiv,
  fgt,
  fload,
  fmul,
  fsqrt,
  fstore,
  fsub,
  get,
  i32,
  if_,
  ltS,
  ltU,
  mul32,
  ne32,
  set,
  shl32,
  vadd,
  vhsum,
  vload,
  vmul,
  vsplat,
  vsplatLoad,
  vstore,
  vsub,
  vzero,
  whileLoop,
  ret,
} from './wasm-asm.js';

// ---- wasm generation -----------------------------------------------------------------------

function buildGemmNT(): { fn: Fn; body: Code } {
  const f = new Fn('gemmNT', [I32, I32, I32, I32, I32, I32, I32, I32], null);
  const [A, B, C, M, N, K, LDC, SYM] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [rb, lc, i, j, o, pa0, pa1, pa2, pa3, pb0, pb1, pc, rp] = f.locals(I32, 13);
  const acc = f.locals(V128, 8);
  const [x0, x1, av] = f.locals(V128, 3);
  const pa = [pa0, pa1, pa2, pa3];
  const body = c(
    set(rb, shl32(get(K), i32(3))),
    set(lc, shl32(get(LDC), i32(3))),
    set(i, i32(0)),
    set(pa0, get(A)),
    whileLoop(
      ltU(get(i), get(M)),
      set(pa1, add32(get(pa0), get(rb))),
      set(pa2, add32(get(pa1), get(rb))),
      set(pa3, add32(get(pa2), get(rb))),
      // j starts at i for the symmetric case (select: SYM ? i : 0)
      set(j, c(get(i), i32(0), get(SYM), 0x1b)),
      set(pb0, add32(get(B), mul32(get(j), get(rb)))),
      set(pc, add32(get(C), shl32(add32(mul32(get(i), get(LDC)), get(j)), i32(3)))),
      whileLoop(
        ltU(get(j), get(N)),
        set(pb1, add32(get(pb0), get(rb))),
        ...acc.map((a) => set(a, vzero)),
        set(o, i32(0)),
        whileLoop(
          ltU(get(o), get(rb)),
          set(x0, vload(add32(get(pb0), get(o)))),
          set(x1, vload(add32(get(pb1), get(o)))),
          ...pa.map((p, r) =>
            c(
              set(av, vload(add32(get(p), get(o)))),
              set(acc[2 * r], vadd(get(acc[2 * r]), vmul(get(av), get(x0)))),
              set(acc[2 * r + 1], vadd(get(acc[2 * r + 1]), vmul(get(av), get(x1)))),
            ),
          ),
          set(o, add32(get(o), i32(16))),
        ),
        set(rp, get(pc)),
        ...[0, 1, 2, 3].map((r) =>
          c(
            r ? set(rp, add32(get(rp), get(lc))) : [],
            fstore(get(rp), vhsum(acc[2 * r])),
            fstore(get(rp), vhsum(acc[2 * r + 1]), 8),
          ),
        ),
        set(j, add32(get(j), i32(2))),
        set(pb0, add32(get(pb1), get(rb))),
        set(pc, add32(get(pc), i32(16))),
      ),
      set(i, add32(get(i), i32(4))),
      set(pa0, add32(get(pa3), get(rb))),
    ),
  );
  return { fn: f, body };
}

function buildGemmNN(): { fn: Fn; body: Code } {
  const f = new Fn('gemmNN', [I32, I32, I32, I32, I32, I32], null);
  const [AT, B, C, M, N, K] = [0, 1, 2, 3, 4, 5];
  const [rbB, rbA, i, jo, p, pA, pB, pc] = f.locals(I32, 8);
  const acc = f.locals(V128, 8);
  const [x0, x1, av] = f.locals(V128, 3);
  const body = c(
    set(rbB, shl32(get(N), i32(3))),
    set(rbA, shl32(get(M), i32(3))),
    set(i, i32(0)),
    whileLoop(
      ltU(get(i), get(M)),
      set(jo, i32(0)),
      whileLoop(
        ltU(get(jo), get(rbB)),
        ...acc.map((a) => set(a, vzero)),
        set(pB, add32(get(B), get(jo))),
        set(pA, add32(get(AT), shl32(get(i), i32(3)))),
        set(p, i32(0)),
        whileLoop(
          ltU(get(p), get(K)),
          set(x0, vload(get(pB))),
          set(x1, vload(get(pB), 16)),
          ...[0, 1, 2, 3].map((r) =>
            c(
              set(av, vsplatLoad(get(pA), 8 * r)),
              set(acc[2 * r], vadd(get(acc[2 * r]), vmul(get(av), get(x0)))),
              set(acc[2 * r + 1], vadd(get(acc[2 * r + 1]), vmul(get(av), get(x1)))),
            ),
          ),
          set(pB, add32(get(pB), get(rbB))),
          set(pA, add32(get(pA), get(rbA))),
          set(p, add32(get(p), i32(1))),
        ),
        set(pc, add32(get(C), add32(mul32(get(i), get(rbB)), get(jo)))),
        ...[0, 1, 2, 3].map((r) =>
          c(
            r ? set(pc, add32(get(pc), get(rbB))) : [],
            vstore(get(pc), get(acc[2 * r])),
            vstore(get(pc), get(acc[2 * r + 1]), 16),
          ),
        ),
        set(jo, add32(get(jo), i32(32))),
      ),
      set(i, add32(get(i), i32(4))),
    ),
  );
  return { fn: f, body };
}

function buildJacobiSweep(): { fn: Fn; body: Code } {
  const f = new Fn('jacobiSweep', [I32, I32, I32, I32, I32, F64], I32);
  const [X, Y, NRM, N, LD, TOL] = [0, 1, 2, 3, 4, 5];
  const [rb, rot, i, j, o, pi, pj, qi, qj, mx] = f.locals(I32, 10);
  const [g, a, b, zeta, az, t, cs, sn, best] = f.locals(F64, 9);
  const [s0, s1, s2, s3, vc, vs, xa, xb, na, nb, ya, yb, ma, mb] = f.locals(V128, 14);
  const nrmAt = (k: number) => add32(get(NRM), shl32(get(k), i32(3)));
  const at = (p: number, off = 0) => (off ? add32(get(p), add32(get(o), i32(off))) : add32(get(p), get(o)));
  // Rotates rows p1, p2 in place: (x1, x2) <- (c·x1 − s·x2, s·x1 + c·x2), two vectors per
  // step so that the optional squared-norm accumulators (s0..s3) form independent chains.
  const rotateRows = (p1: number, p2: number, norms: boolean) =>
    c(
      norms ? c(set(s0, vzero), set(s1, vzero), set(s2, vzero), set(s3, vzero)) : [],
      set(o, i32(0)),
      whileLoop(
        ltU(get(o), get(rb)),
        set(xa, vload(at(p1))),
        set(xb, vload(at(p2))),
        set(ya, vload(at(p1), 16)),
        set(yb, vload(at(p2), 16)),
        set(na, vsub(vmul(get(xa), get(vc)), vmul(get(xb), get(vs)))),
        set(nb, vadd(vmul(get(xa), get(vs)), vmul(get(xb), get(vc)))),
        set(ma, vsub(vmul(get(ya), get(vc)), vmul(get(yb), get(vs)))),
        set(mb, vadd(vmul(get(ya), get(vs)), vmul(get(yb), get(vc)))),
        vstore(at(p1), get(na)),
        vstore(at(p2), get(nb)),
        vstore(at(p1), get(ma), 16),
        vstore(at(p2), get(mb), 16),
        norms
          ? c(
              set(s0, vadd(get(s0), vmul(get(na), get(na)))),
              set(s1, vadd(get(s1), vmul(get(nb), get(nb)))),
              set(s2, vadd(get(s2), vmul(get(ma), get(ma)))),
              set(s3, vadd(get(s3), vmul(get(mb), get(mb)))),
            )
          : [],
        set(o, add32(get(o), i32(32))),
      ),
    );
  const swapRows = (p1: number, p2: number) =>
    c(
      set(o, i32(0)),
      whileLoop(
        ltU(get(o), get(rb)),
        set(xa, vload(at(p1))),
        vstore(at(p1), vload(at(p2))),
        vstore(at(p2), get(xa)),
        set(o, add32(get(o), i32(16))),
      ),
    );
  const body = c(
    set(rb, shl32(get(LD), i32(3))),
    set(rot, i32(0)),
    set(i, i32(0)),
    set(pi, get(X)),
    set(qi, get(Y)),
    whileLoop(
      ltS(add32(get(i), i32(1)), get(N)),
      // de Rijk's pivoting: bring the longest remaining row to position i (fewer sweeps).
      set(mx, get(i)),
      set(best, fload(nrmAt(i))),
      set(j, add32(get(i), i32(1))),
      whileLoop(
        ltS(get(j), get(N)),
        if_(fgt(fload(nrmAt(j)), get(best)), c(set(best, fload(nrmAt(j))), set(mx, get(j)))),
        set(j, add32(get(j), i32(1))),
      ),
      if_(
        ne32(get(mx), get(i)),
        c(
          set(pj, add32(get(X), mul32(get(mx), get(rb)))),
          set(qj, add32(get(Y), mul32(get(mx), get(rb)))),
          swapRows(pi, pj),
          swapRows(qi, qj),
          fstore(nrmAt(mx), fload(nrmAt(i))),
          fstore(nrmAt(i), get(best)),
        ),
      ),
      set(j, add32(get(i), i32(1))),
      set(pj, add32(get(pi), get(rb))),
      set(qj, add32(get(qi), get(rb))),
      whileLoop(
        ltS(get(j), get(N)),
        // g = x_i · x_j with four independent accumulators (ld % 8 = 0)
        set(s0, vzero),
        set(s1, vzero),
        set(s2, vzero),
        set(s3, vzero),
        set(o, i32(0)),
        whileLoop(
          ltU(get(o), get(rb)),
          set(s0, vadd(get(s0), vmul(vload(at(pi)), vload(at(pj))))),
          set(s1, vadd(get(s1), vmul(vload(at(pi), 16), vload(at(pj), 16)))),
          set(s2, vadd(get(s2), vmul(vload(at(pi), 32), vload(at(pj), 32)))),
          set(s3, vadd(get(s3), vmul(vload(at(pi), 48), vload(at(pj), 48)))),
          set(o, add32(get(o), i32(64))),
        ),
        set(s0, vadd(vadd(get(s0), get(s1)), vadd(get(s2), get(s3)))),
        set(g, vhsum(s0)),
        set(a, fload(nrmAt(i))),
        set(b, fload(nrmAt(j))),
        if_(
          fgt(fabs(get(g)), fmul(get(TOL), fmul(fsqrt(get(a)), fsqrt(get(b))))),
          c(
            // Rutishauser's angle: ζ = (b−a)/2g, t = sign(ζ)/(|ζ| + sqrt(1+ζ²)), guarded for huge ζ
            set(zeta, fdiv(fsub(get(b), get(a)), fmul(f64(2), get(g)))),
            set(az, fabs(get(zeta))),
            if_(
              fgt(get(az), f64(1e8)),
              set(t, fdiv(f64(0.5), get(az))),
              set(t, fdiv(f64(1), fadd(get(az), fsqrt(fadd(f64(1), fmul(get(az), get(az))))))),
            ),
            set(t, fcopysign(get(t), get(zeta))),
            set(cs, fdiv(f64(1), fsqrt(fadd(f64(1), fmul(get(t), get(t)))))),
            set(sn, fmul(get(cs), get(t))),
            set(vc, vsplat(get(cs))),
            set(vs, vsplat(get(sn))),
            rotateRows(pi, pj, true),
            fstore(nrmAt(i), fadd(vhsum(s0), vhsum(s2))),
            fstore(nrmAt(j), fadd(vhsum(s1), vhsum(s3))),
            rotateRows(qi, qj, false),
            set(rot, add32(get(rot), i32(1))),
          ),
        ),
        set(j, add32(get(j), i32(1))),
        set(pj, add32(get(pj), get(rb))),
        set(qj, add32(get(qj), get(rb))),
      ),
      set(i, add32(get(i), i32(1))),
      set(pi, add32(get(pi), get(rb))),
      set(qi, add32(get(qi), get(rb))),
    ),
    ret(get(rot)),
  );
  return { fn: f, body };
}

interface WasmExports {
  mem: WebAssembly.Memory;
  gemmNT(a: number, b: number, c: number, m: number, n: number, k: number, ldc: number, sym: number): void;
  gemmNN(at: number, b: number, c: number, m: number, n: number, k: number): void;
  jacobiSweep(x: number, y: number, nrm: number, n: number, ld: number, tol: number): number;
}

let wasmModule: WebAssembly.Module | null | undefined;

/** The compiled kernel module, or null where wasm SIMD is unavailable (compiled once per thread). */
export function kernelModule(): WebAssembly.Module | null {
  if (wasmModule !== undefined) return wasmModule;
  try {
    const bytes = encodeModule([buildGemmNT(), buildGemmNN(), buildJacobiSweep()], 16);
    wasmModule = new WebAssembly.Module(bytes);
  } catch {
    wasmModule = null;
  }
  return wasmModule;
}

// ---- JS reference implementations (same contracts) -----------------------------------------

export function gemmNTjs(H: Float64Array, a: number, b: number, cc: number, m: number, n: number, k: number, ldc: number, sym: boolean): void {
  for (let i = 0; i < m; i += 4) {
    for (let j = sym ? i : 0; j < n; j += 2) {
      for (let r = 0; r < 4; r++) {
        for (let s = 0; s < 2; s++) {
          const ar = a + (i + r) * k, bs = b + (j + s) * k;
          let s0 = 0, s1 = 0;
          for (let p = 0; p < k; p += 2) {
            s0 += H[ar + p] * H[bs + p];
            s1 += H[ar + p + 1] * H[bs + p + 1];
          }
          H[cc + (i + r) * ldc + j + s] = s0 + s1;
        }
      }
    }
  }
}

export function gemmNNjs(H: Float64Array, at: number, b: number, cc: number, m: number, n: number, k: number): void {
  for (let i = 0; i < m; i++) {
    const crow = cc + i * n;
    for (let q = 0; q < n; q++) H[crow + q] = 0;
    for (let p = 0; p < k; p++) {
      const s = H[at + p * m + i];
      if (s === 0) continue;
      const brow = b + p * n;
      for (let q = 0; q < n; q++) H[crow + q] += s * H[brow + q];
    }
  }
}

export function jacobiSweepJs(H: Float64Array, x: number, y: number, nrm: number, n: number, ld: number, tol: number): number {
  let rot = 0;
  for (let i = 0; i + 1 < n; i++) {
    const pi = x + i * ld, qi = y + i * ld;
    let mx = i;
    for (let j = i + 1; j < n; j++) if (H[nrm + j] > H[nrm + mx]) mx = j;
    if (mx !== i) {
      for (let p = 0; p < ld; p++) {
        let tmp = H[pi + p];
        H[pi + p] = H[x + mx * ld + p];
        H[x + mx * ld + p] = tmp;
        tmp = H[qi + p];
        H[qi + p] = H[y + mx * ld + p];
        H[y + mx * ld + p] = tmp;
      }
      const tmp = H[nrm + i];
      H[nrm + i] = H[nrm + mx];
      H[nrm + mx] = tmp;
    }
    for (let j = i + 1; j < n; j++) {
      const pj = x + j * ld, qj = y + j * ld;
      let g = 0;
      for (let p = 0; p < ld; p++) g += H[pi + p] * H[pj + p];
      const a = H[nrm + i], b = H[nrm + j];
      if (!(Math.abs(g) > tol * Math.sqrt(a) * Math.sqrt(b))) continue;
      const zeta = (b - a) / (2 * g);
      const az = Math.abs(zeta);
      let t = az > 1e8 ? 0.5 / az : 1 / (az + Math.sqrt(1 + az * az));
      if (zeta < 0 || Object.is(zeta, -0)) t = -t;
      const cs = 1 / Math.sqrt(1 + t * t), sn = cs * t;
      let ni = 0, nj = 0;
      for (let p = 0; p < ld; p++) {
        const xa = H[pi + p], xb = H[pj + p];
        const u = xa * cs - xb * sn, v = xa * sn + xb * cs;
        H[pi + p] = u;
        H[pj + p] = v;
        ni += u * u;
        nj += v * v;
      }
      H[nrm + i] = ni;
      H[nrm + j] = nj;
      for (let p = 0; p < ld; p++) {
        const xa = H[qi + p], xb = H[qj + p];
        H[qi + p] = xa * cs - xb * sn;
        H[qj + p] = xa * sn + xb * cs;
      }
      rot++;
    }
  }
  return rot;
}

// ---- the arena ------------------------------------------------------------------------------

/**
 * A growable float64 workspace plus the kernels bound to it. One per thread; not re-entrant.
 * `heap` is replaced when the workspace grows, so re-read it after `reserve`.
 */
export class Arena {
  heap: Float64Array;
  readonly simd: boolean;
  private ex: WasmExports | null = null;

  constructor(opts: { wasm?: boolean } = {}) {
    const mod = opts.wasm === false ? null : kernelModule();
    if (mod) {
      this.ex = new WebAssembly.Instance(mod, {}).exports as unknown as WasmExports;
      this.heap = new Float64Array(this.ex.mem.buffer);
    } else {
      this.heap = new Float64Array(1 << 17);
    }
    this.simd = this.ex !== null;
  }

  /** Ensures at least `doubles` entries are addressable. May replace `heap` (contents kept). */
  reserve(doubles: number): Float64Array {
    if (doubles <= this.heap.length) return this.heap;
    if (this.ex) {
      const bytes = doubles * 8;
      if (bytes > 0x7fff0000) throw new RangeError(`workspace of ${doubles} doubles exceeds 2 GiB`);
      const pages = Math.ceil((bytes - this.ex.mem.buffer.byteLength) / 65536);
      this.ex.mem.grow(pages);
      this.heap = new Float64Array(this.ex.mem.buffer);
    } else {
      const h = new Float64Array(Math.max(doubles, this.heap.length * 2));
      h.set(this.heap);
      this.heap = h;
    }
    return this.heap;
  }

  gemmNT(a: number, b: number, cc: number, m: number, n: number, k: number, ldc: number, sym = false): void {
    if (m % 4 || n % 2 || k % 2) throw new RangeError(`gemmNT: bad padding m=${m} n=${n} k=${k}`);
    if (this.ex) this.ex.gemmNT(a * 8, b * 8, cc * 8, m, n, k, ldc, sym ? 1 : 0);
    else gemmNTjs(this.heap, a, b, cc, m, n, k, ldc, sym);
  }

  gemmNN(at: number, b: number, cc: number, m: number, n: number, k: number): void {
    if (m % 4 || n % 4) throw new RangeError(`gemmNN: bad padding m=${m} n=${n}`);
    if (this.ex) this.ex.gemmNN(at * 8, b * 8, cc * 8, m, n, k);
    else gemmNNjs(this.heap, at, b, cc, m, n, k);
  }

  jacobiSweep(x: number, y: number, nrm: number, n: number, ld: number, tol: number): number {
    if (ld % 8) throw new RangeError(`jacobiSweep: ld=${ld} must be a multiple of 8`);
    if (this.ex) return this.ex.jacobiSweep(x * 8, y * 8, nrm * 8, n, ld, tol);
    return jacobiSweepJs(this.heap, x, y, nrm, n, ld, tol);
  }
}

/** Rounds n up to a multiple of m. */
export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}
