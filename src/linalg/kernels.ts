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
 *   gemmNN(at,b,c, m,n,k, pk)        C = A·B with A m×k given TRANSPOSED (at: k×m), B k×n,
 *        C m×n. m%4 = 0, n%4 = 0. A is first repacked (into pk, m·k doubles) as 4-row panels
 *        [i/4][p][4]; the kernel is vectorised along the rows of B: each step broadcasts four
 *        A entries (static offsets) against two vectors of B.
 *   jacobiSweep(x,y,nrm, n,ld, tol)  one cyclic sweep of one-sided (Hestenes) Jacobi on the n
 *        rows of X (row stride ld, ld%8 = 0), applying the same rotations to the rows of Y;
 *        nrm[i] holds ‖x_i‖²; after a rotation it is updated by Rutishauser's formulas
 *        (a − t·g, b + t·g) and recomputed exactly when it shrank by more than half (the
 *        cancellation case). Callers set nrm exactly before the first sweep; a sweep with no
 *        rotation therefore decides convergence on exact norms. Pair (i,j) is rotated when
 *        |x_i·x_j| > tol·‖x_i‖‖x_j‖. Input should be scaled to moderate magnitudes (norms² far
 *        from over/underflow: the callers scale by a power of two). De Rijk's pivoting: before row i pairs with the rows below
 *        it, the longest remaining row is swapped into position i (X, Y and nrm), which saves
 *        ~20% of the rotations. Returns the number of rotations; 0 means converged.
 *        Cost per rotated pair ≈ 5·ld flops-pairs; the loops are unrolled with independent
 *        accumulators because a single add chain (4-cycle latency) would bound them.
 *   cholUpper(a, n, ld), invUpper(r, z, n, ld)   the O(n³) small-matrix steps (Cholesky of
 *        the Gram matrix, inverse of its factor): row-oriented, inner loops are contiguous
 *        axpys in f64x2. Plain JS managed only ~0.3 GFLOP/s on these short loops.
 *   signCos(u, v, n, ld, d, cos)   canonical sign of each (u_k, v_k) pair and c_k = u_k·v_k.
 *   houseLeft / houseRight / rotRows   Householder reflectors and sequences of plane rotations
 *        on contiguous rows: the O(n³) and O(n²)-per-sweep parts of the Golub–Kahan SVD
 *        (svd.ts), whose scalar bidiagonal logic stays in JS.
 */
import {
  and32,
  eqz32,
  feq,
  fge,
  fne,
  fneg,
  flt,
  geS,
  or32,
  sub32,
  vneg,
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

import { choleskyUpperInPlace, invUpper } from './dense.js';

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
  const [AP, B, C, M, N, K] = [0, 1, 2, 3, 4, 5];
  const [rbB, i, jo, p, pA, pB, pc] = f.locals(I32, 7);
  const acc = f.locals(V128, 8);
  const [x0, x1, av] = f.locals(V128, 3);
  // Column panels outside, row blocks inside: the 4-column panel of B (k×32 bytes) stays in L1
  // while all row blocks use it; each row block's packed A panel (k×4 doubles) is contiguous.
  const body = c(
    set(rbB, shl32(get(N), i32(3))),
    set(jo, i32(0)),
    whileLoop(
      ltU(get(jo), get(rbB)),
      set(i, i32(0)),
      whileLoop(
        ltU(get(i), get(M)),
        ...acc.map((a) => set(a, vzero)),
        set(pB, add32(get(B), get(jo))),
        set(pA, add32(get(AP), mul32(get(i), shl32(get(K), i32(3))))), // block i/4 starts at (i/4)·k·32 bytes
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
          set(pA, add32(get(pA), i32(32))),
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
        set(i, add32(get(i), i32(4))),
      ),
      set(jo, add32(get(jo), i32(32))),
    ),
  );
  return { fn: f, body };
}

function buildJacobiSweep(): { fn: Fn; body: Code } {
  const f = new Fn('jacobiSweep', [I32, I32, I32, I32, I32, F64], I32);
  const [X, Y, NRM, N, LD, TOL] = [0, 1, 2, 3, 4, 5];
  const [rb, rot, i, j, o, pi, pj, qi, qj, mx] = f.locals(I32, 10);
  const [g, a, b, dd, q, u, t, cs, sn, best, tol2, na, nb] = f.locals(F64, 13);
  const [s0, s1, s2, s3, vc, vs, xa, xb] = f.locals(V128, 8);
  const nrmAt = (k: number) => add32(get(NRM), shl32(get(k), i32(3)));
  const at = (p: number, off = 0) => (off ? add32(get(p), add32(get(o), i32(off))) : add32(get(p), get(o)));
  /** dest = x_p1 · x_p2 with four independent accumulators (ld % 8 = 0). */
  const dot = (dest: number, p1: number, p2: number) =>
    c(
      set(s0, vzero),
      set(s1, vzero),
      set(s2, vzero),
      set(s3, vzero),
      set(o, i32(0)),
      whileLoop(
        ltU(get(o), get(rb)),
        set(s0, vadd(get(s0), vmul(vload(at(p1)), vload(at(p2))))),
        set(s1, vadd(get(s1), vmul(vload(at(p1), 16), vload(at(p2), 16)))),
        set(s2, vadd(get(s2), vmul(vload(at(p1), 32), vload(at(p2), 32)))),
        set(s3, vadd(get(s3), vmul(vload(at(p1), 48), vload(at(p2), 48)))),
        set(o, add32(get(o), i32(64))),
      ),
      set(s0, vadd(vadd(get(s0), get(s1)), vadd(get(s2), get(s3)))),
      set(dest, vhsum(s0)),
    );
  /**
   * (x_p1, x_p2) <- (c·x_p1 − s·x_p2, s·x_p1 + c·x_p2) for the X rows and the Y rows in one
   * loop, two vectors of each row per step (ld % 4 = 0): fewer loop-control and stack-check
   * instructions per element, which is what bounds this loop (128-bit SIMD, no FMA).
   */
  const rotate = (p1: number, p2: number, r1: number, r2: number) => {
    const pair = (a: number, b: number, off: number) =>
      c(
        set(xa, vload(at(a), off)),
        set(xb, vload(at(b), off)),
        vstore(at(a), vsub(vmul(get(xa), get(vc)), vmul(get(xb), get(vs))), off),
        vstore(at(b), vadd(vmul(get(xa), get(vs)), vmul(get(xb), get(vc))), off),
      );
    return c(
      set(o, i32(0)),
      whileLoop(ltU(get(o), get(rb)), pair(p1, p2, 0), pair(r1, r2, 0), pair(p1, p2, 16), pair(r1, r2, 16), set(o, add32(get(o), i32(32)))),
    );
  };
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
    set(tol2, fmul(get(TOL), get(TOL))),
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
        dot(g, pi, pj),
        set(a, fload(nrmAt(i))),
        set(b, fload(nrmAt(j))),
        // rotate when g² > tol²·a·b (no square roots on the common no-rotation path)
        if_(
          fgt(fmul(get(g), get(g)), fmul(get(tol2), fmul(get(a), get(b)))),
          c(
            // Angle of the 2×2 Gram [[a, g], [g, b]] with D = b − a, q = sqrt(4g² + D²):
            //   t = tan θ = 2g·sgn(D)/(|D| + q),  c = sqrt((|D| + q)/(2q)),  s = c·t
            // (algebraically Rutishauser's t = sgn(ζ)/(|ζ| + sqrt(1+ζ²)), ζ = D/2g; this form
            // has a shorter dependency chain: one sqrt before two independent div/sqrt).
            set(dd, fsub(get(b), get(a))),
            set(q, fsqrt(fadd(fmul(f64(4), fmul(get(g), get(g))), fmul(get(dd), get(dd))))),
            set(u, fadd(fabs(get(dd)), get(q))),
            set(t, fdiv(fmul(fcopysign(f64(2), get(dd)), get(g)), get(u))),
            set(cs, fsqrt(fdiv(get(u), fmul(f64(2), get(q))))),
            set(sn, fmul(get(cs), get(t))),
            set(vc, vsplat(get(cs))),
            set(vs, vsplat(get(sn))),
            rotate(pi, pj, qi, qj),
            // new squared norms: the eigenvalues a − t·g, b + t·g of the 2×2 Gram; the one
            // that shrank is recomputed exactly when it lost more than half (cancellation).
            set(na, fsub(get(a), fmul(get(t), get(g)))),
            set(nb, fadd(get(b), fmul(get(t), get(g)))),
            if_(flt(get(na), fmul(f64(0.5), get(a))), dot(na, pi, pi)),
            if_(flt(get(nb), fmul(f64(0.5), get(b))), dot(nb, pj, pj)),
            fstore(nrmAt(i), get(na)),
            fstore(nrmAt(j), get(nb)),
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

/**
 * y[0..cnt) −= a·x[0..cnt) (byte pointers py, px; a as f64 local `a`, splatted in `va`):
 * f64x2 over pairs (unaligned loads are fine in wasm), one scalar tail when cnt is odd.
 */
function axpySub(f: { o: number; lim: number }, py: Code, px: Code, cnt: Code, a: number, va: number): Code {
  const { o, lim } = f;
  return c(
    set(o, i32(0)),
    set(lim, shl32(and32(cnt, i32(-2)), i32(3))),
    whileLoop(
      ltU(get(o), get(lim)),
      vstore(add32(py, get(o)), vsub(vload(add32(py, get(o))), vmul(get(va), vload(add32(px, get(o)))))),
      set(o, add32(get(o), i32(16))),
    ),
    if_(and32(cnt, i32(1)), fstore(add32(py, get(o)), fsub(fload(add32(py, get(o))), fmul(get(a), fload(add32(px, get(o))))))),
  );
}

/** Upper Cholesky in place (same contract as dense.ts choleskyUpperInPlace). Returns 1/0. */
function buildChol(): { fn: Fn; body: Code } {
  const f = new Fn('cholUpper', [I32, I32, I32], I32);
  const [A, N, LD] = [0, 1, 2];
  const [rb, k, i, j, rk, ri, o, lim, cnt] = f.locals(I32, 9);
  const [piv, dkk, inv, a] = f.locals(F64, 4);
  const [va] = f.locals(V128, 1);
  const at = (row: number, col: number) => add32(get(row), shl32(get(col), i32(3)));
  const body = c(
    set(rb, shl32(get(LD), i32(3))),
    set(k, i32(0)),
    set(rk, get(A)),
    whileLoop(
      ltS(get(k), get(N)),
      set(piv, fload(at(rk, k))),
      // not positive, NaN or infinite: not numerically positive definite
      if_(or32(eqz32(fgt(get(piv), f64(0))), fge(get(piv), f64(Infinity))), ret(i32(0))),
      set(dkk, fsqrt(get(piv))),
      fstore(at(rk, k), get(dkk)),
      set(inv, fdiv(f64(1), get(dkk))),
      set(j, add32(get(k), i32(1))),
      whileLoop(ltS(get(j), get(N)), fstore(at(rk, j), fmul(fload(at(rk, j)), get(inv))), set(j, add32(get(j), i32(1)))),
      set(i, add32(get(k), i32(1))),
      set(ri, add32(get(rk), get(rb))),
      whileLoop(
        ltS(get(i), get(N)),
        set(a, fload(at(rk, i))),
        if_(
          fne(get(a), f64(0)),
          c(
            set(va, vsplat(get(a))),
            set(cnt, sub32(get(N), get(i))),
            axpySub({ o, lim }, at(ri, i), at(rk, i), get(cnt), a, va),
          ),
        ),
        set(i, add32(get(i), i32(1))),
        set(ri, add32(get(ri), get(rb))),
      ),
      set(k, add32(get(k), i32(1))),
      set(rk, add32(get(rk), get(rb))),
    ),
    // zero the strictly lower triangle
    set(i, i32(1)),
    set(ri, add32(get(A), get(rb))),
    whileLoop(
      ltS(get(i), get(N)),
      set(j, i32(0)),
      whileLoop(ltS(get(j), get(i)), fstore(at(ri, j), f64(0)), set(j, add32(get(j), i32(1)))),
      set(i, add32(get(i), i32(1))),
      set(ri, add32(get(ri), get(rb))),
    ),
    ret(i32(1)),
  );
  return { fn: f, body };
}

/** Z = R⁻¹ for upper R (same contract as dense.ts invUpper, one stride for both). Returns 1/0. */
function buildInvUpper(): { fn: Fn; body: Code } {
  const f = new Fn('invUpper', [I32, I32, I32, I32], I32);
  const [R, Z, N, LD] = [0, 1, 2, 3];
  const [rb, i, j, k, ri, zi, zk, o, lim, cnt] = f.locals(I32, 10);
  const [dii, a, inv] = f.locals(F64, 3);
  const [va] = f.locals(V128, 1);
  const at = (row: number, col: number) => add32(get(row), shl32(get(col), i32(3)));
  const body = c(
    set(rb, shl32(get(LD), i32(3))),
    set(i, sub32(get(N), i32(1))),
    whileLoop(
      geS(get(i), i32(0)),
      set(ri, add32(get(R), mul32(get(i), get(rb)))),
      set(zi, add32(get(Z), mul32(get(i), get(rb)))),
      set(dii, fload(at(ri, i))),
      if_(or32(feq(get(dii), f64(0)), eqz32(flt(fabs(get(dii)), f64(Infinity)))), ret(i32(0))),
      set(j, i32(0)),
      whileLoop(ltS(get(j), get(N)), fstore(at(zi, j), f64(0)), set(j, add32(get(j), i32(1)))),
      set(k, add32(get(i), i32(1))),
      set(zk, add32(get(zi), get(rb))),
      whileLoop(
        ltS(get(k), get(N)),
        set(a, fneg(fload(at(ri, k)))),
        if_(
          fne(get(a), f64(0)),
          c(set(va, vsplat(get(a))), set(cnt, sub32(get(N), get(k))), axpySub({ o, lim }, at(zi, k), at(zk, k), get(cnt), a, va)),
        ),
        set(k, add32(get(k), i32(1))),
        set(zk, add32(get(zk), get(rb))),
      ),
      set(inv, fdiv(f64(-1), get(dii))),
      set(j, add32(get(i), i32(1))),
      whileLoop(ltS(get(j), get(N)), fstore(at(zi, j), fmul(fload(at(zi, j)), get(inv))), set(j, add32(get(j), i32(1)))),
      fstore(at(zi, i), fdiv(f64(1), get(dii))),
      set(i, sub32(get(i), i32(1))),
    ),
    ret(i32(1)),
  );
  return { fn: f, body };
}

/**
 * Canonical sign and cosines of n mode pairs: rows u_k, v_k (length d, stride ld, ld % 4 = 0,
 * padding zero). Flips (u_k, v_k) jointly when the first entry of largest magnitude of u_k is
 * negative, then cos[k] = u_k·v_k.
 */
function buildSignCos(): { fn: Fn; body: Code } {
  const f = new Fn('signCos', [I32, I32, I32, I32, I32, I32], null);
  const [U, V, N, LD, D, COS] = [0, 1, 2, 3, 4, 5];
  const [rb, k, i, bi, pu, pv, o] = f.locals(I32, 7);
  const [best, a] = f.locals(F64, 2);
  const [s0, s1] = f.locals(V128, 2);
  const body = c(
    set(rb, shl32(get(LD), i32(3))),
    set(k, i32(0)),
    set(pu, get(U)),
    set(pv, get(V)),
    whileLoop(
      ltS(get(k), get(N)),
      set(best, f64(0)),
      set(bi, i32(0)),
      set(i, i32(0)),
      whileLoop(
        ltS(get(i), get(D)),
        set(a, fabs(fload(add32(get(pu), shl32(get(i), i32(3)))))),
        if_(fgt(get(a), get(best)), c(set(best, get(a)), set(bi, get(i)))),
        set(i, add32(get(i), i32(1))),
      ),
      if_(
        flt(fload(add32(get(pu), shl32(get(bi), i32(3)))), f64(0)),
        c(
          set(o, i32(0)),
          whileLoop(
            ltU(get(o), get(rb)),
            vstore(add32(get(pu), get(o)), vneg(vload(add32(get(pu), get(o))))),
            vstore(add32(get(pv), get(o)), vneg(vload(add32(get(pv), get(o))))),
            set(o, add32(get(o), i32(16))),
          ),
        ),
      ),
      set(s0, vzero),
      set(s1, vzero),
      set(o, i32(0)),
      whileLoop(
        ltU(get(o), get(rb)),
        set(s0, vadd(get(s0), vmul(vload(add32(get(pu), get(o))), vload(add32(get(pv), get(o)))))),
        set(s1, vadd(get(s1), vmul(vload(add32(get(pu), get(o)), 16), vload(add32(get(pv), get(o)), 16)))),
        set(o, add32(get(o), i32(32))),
      ),
      set(s0, vadd(get(s0), get(s1))),
      fstore(add32(get(COS), shl32(get(k), i32(3))), vhsum(s0)),
      set(k, add32(get(k), i32(1))),
      set(pu, add32(get(pu), get(rb))),
      set(pv, add32(get(pv), get(rb))),
    ),
  );
  return { fn: f, body };
}

/**
 * Householder reflector H = I − τ·v·vᵀ applied from the LEFT to rows r0..r1−1, columns
 * c0..c1−1 of A (stride ld): w = Σ_i v_i·A[i, c0:c1] (w: scratch), then A[i, c0:c1] −= τ·v_i·w.
 * Both passes are contiguous row axpys.
 */
function buildHouseLeft(): { fn: Fn; body: Code } {
  const f = new Fn('houseLeft', [I32, I32, I32, I32, I32, I32, I32, F64, I32], null);
  const [A, LD, R0, R1, C0, C1, VP, TAU, W] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [rb, i, cnt, row, o, lim, vi] = f.locals(I32, 7);
  const [a] = f.locals(F64, 1);
  const [va] = f.locals(V128, 1);
  const body = c(
    set(rb, shl32(get(LD), i32(3))),
    set(cnt, sub32(get(C1), get(C0))),
    set(o, i32(0)),
    whileLoop(ltS(get(o), get(cnt)), fstore(add32(get(W), shl32(get(o), i32(3))), f64(0)), set(o, add32(get(o), i32(1)))),
    // w += v_i · A[i, c0:c1]
    set(i, get(R0)),
    set(vi, get(VP)),
    whileLoop(
      ltS(get(i), get(R1)),
      set(a, fneg(fload(get(vi)))),
      if_(
        fne(get(a), f64(0)),
        c(
          set(row, add32(add32(get(A), mul32(get(i), get(rb))), shl32(get(C0), i32(3)))),
          set(va, vsplat(get(a))),
          axpySub({ o, lim }, get(W), get(row), get(cnt), a, va),
        ),
      ),
      set(i, add32(get(i), i32(1))),
      set(vi, add32(get(vi), i32(8))),
    ),
    // A[i, c0:c1] −= τ v_i · w
    set(i, get(R0)),
    set(vi, get(VP)),
    whileLoop(
      ltS(get(i), get(R1)),
      set(a, fmul(get(TAU), fload(get(vi)))),
      if_(
        fne(get(a), f64(0)),
        c(
          set(row, add32(add32(get(A), mul32(get(i), get(rb))), shl32(get(C0), i32(3)))),
          set(va, vsplat(get(a))),
          axpySub({ o, lim }, get(row), get(W), get(cnt), a, va),
        ),
      ),
      set(i, add32(get(i), i32(1))),
      set(vi, add32(get(vi), i32(8))),
    ),
  );
  return { fn: f, body };
}

/**
 * Householder reflector applied from the RIGHT to rows r0..r1−1, columns c0..c1−1 of A:
 * per row, s = A[i, c0:c1]·v, then A[i, c0:c1] −= τ·s·v.
 */
function buildHouseRight(): { fn: Fn; body: Code } {
  const f = new Fn('houseRight', [I32, I32, I32, I32, I32, I32, I32, F64], null);
  const [A, LD, R0, R1, C0, C1, VP, TAU] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [rb, i, cnt, row, o, lim] = f.locals(I32, 6);
  const [a, sc] = f.locals(F64, 2);
  const [va, s0] = f.locals(V128, 2);
  const body = c(
    set(rb, shl32(get(LD), i32(3))),
    set(cnt, sub32(get(C1), get(C0))),
    set(i, get(R0)),
    whileLoop(
      ltS(get(i), get(R1)),
      set(row, add32(add32(get(A), mul32(get(i), get(rb))), shl32(get(C0), i32(3)))),
      // s = row · v (pairs, then the odd tail)
      set(s0, vzero),
      set(o, i32(0)),
      set(lim, shl32(and32(get(cnt), i32(-2)), i32(3))),
      whileLoop(
        ltU(get(o), get(lim)),
        set(s0, vadd(get(s0), vmul(vload(add32(get(row), get(o))), vload(add32(get(VP), get(o)))))),
        set(o, add32(get(o), i32(16))),
      ),
      set(sc, vhsum(s0)),
      if_(and32(get(cnt), i32(1)), set(sc, fadd(get(sc), fmul(fload(add32(get(row), get(o))), fload(add32(get(VP), get(o))))))),
      set(a, fmul(get(TAU), get(sc))),
      if_(fne(get(a), f64(0)), c(set(va, vsplat(get(a))), axpySub({ o, lim }, get(row), get(VP), get(cnt), a, va))),
      set(i, add32(get(i), i32(1))),
    ),
  );
  return { fn: f, body };
}

/**
 * A sequence of plane rotations on rows (length len, even; stride ld): for t < count, rows
 * a = idx[2t], b = idx[2t+1] (i32) and (c, s) = cs[2t], cs[2t+1]:
 * (r_a, r_b) <- (c·r_a + s·r_b, c·r_b − s·r_a). Applied in order (each may use the last's output).
 */
function buildRotRows(): { fn: Fn; body: Code } {
  const f = new Fn('rotRows', [I32, I32, I32, I32, I32, I32], null);
  const [BASE, LD, LEN, IDX, CS, COUNT] = [0, 1, 2, 3, 4, 5];
  const [rb, t, pa, pb, o, lim, ip, cp] = f.locals(I32, 8);
  const [vc, vs, xa, xb] = f.locals(V128, 4);
  const body = c(
    set(rb, shl32(get(LD), i32(3))),
    set(lim, shl32(get(LEN), i32(3))),
    set(t, i32(0)),
    set(ip, get(IDX)),
    set(cp, get(CS)),
    whileLoop(
      ltS(get(t), get(COUNT)),
      set(pa, add32(get(BASE), mul32(c(get(ip), 0x28, 2, 0), get(rb)))), // i32.load idx[2t]
      set(pb, add32(get(BASE), mul32(c(get(ip), 0x28, 2, 4), get(rb)))), // i32.load idx[2t+1]
      set(vc, vsplatLoad(get(cp), 0)),
      set(vs, vsplatLoad(get(cp), 8)),
      set(o, i32(0)),
      whileLoop(
        ltU(get(o), get(lim)),
        set(xa, vload(add32(get(pa), get(o)))),
        set(xb, vload(add32(get(pb), get(o)))),
        vstore(add32(get(pa), get(o)), vadd(vmul(get(xa), get(vc)), vmul(get(xb), get(vs)))),
        vstore(add32(get(pb), get(o)), vsub(vmul(get(xb), get(vc)), vmul(get(xa), get(vs)))),
        set(o, add32(get(o), i32(16))),
      ),
      set(t, add32(get(t), i32(1))),
      set(ip, add32(get(ip), i32(8))),
      set(cp, add32(get(cp), i32(16))),
    ),
  );
  return { fn: f, body };
}

interface WasmExports {
  mem: WebAssembly.Memory;
  gemmNT(a: number, b: number, c: number, m: number, n: number, k: number, ldc: number, sym: number): void;
  gemmNN(at: number, b: number, c: number, m: number, n: number, k: number): void;
  jacobiSweep(x: number, y: number, nrm: number, n: number, ld: number, tol: number): number;
  cholUpper(a: number, n: number, ld: number): number;
  invUpper(r: number, z: number, n: number, ld: number): number;
  signCos(u: number, v: number, n: number, ld: number, d: number, cos: number): void;
  houseLeft(a: number, ld: number, r0: number, r1: number, c0: number, c1: number, v: number, tau: number, w: number): void;
  houseRight(a: number, ld: number, r0: number, r1: number, c0: number, c1: number, v: number, tau: number): void;
  rotRows(base: number, ld: number, len: number, idx: number, cs: number, count: number): void;
}

let wasmModule: WebAssembly.Module | null | undefined;

/**
 * Adopts a kernel module compiled elsewhere (a worker receives the main thread's through
 * workerData: modules are shareable between threads, so the worker skips compiling and
 * tiering up the same code).
 */
export function adoptKernelModule(mod: WebAssembly.Module | null | undefined): void {
  if (mod && wasmModule === undefined) wasmModule = mod;
}

/** The compiled kernel module, or null where wasm SIMD is unavailable (compiled once per thread). */
export function kernelModule(): WebAssembly.Module | null {
  if (wasmModule !== undefined) return wasmModule;
  try {
    const bytes = encodeModule(
      [buildGemmNT(), buildGemmNN(), buildJacobiSweep(), buildChol(), buildInvUpper(), buildSignCos(), buildHouseLeft(), buildHouseRight(), buildRotRows()],
      16,
    );
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
  const tol2 = tol * tol;
  const rowDot = (p1: number, p2: number) => {
    let s = 0;
    for (let p = 0; p < ld; p++) s += H[p1 + p] * H[p2 + p];
    return s;
  };
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
      const g = rowDot(pi, pj);
      const a = H[nrm + i], b = H[nrm + j];
      if (!(g * g > tol2 * (a * b))) continue;
      const dd = b - a;
      const q = Math.sqrt(4 * (g * g) + dd * dd);
      const u = Math.abs(dd) + q;
      const t = ((dd < 0 || Object.is(dd, -0) ? -2 : 2) * g) / u;
      const cs = Math.sqrt(u / (2 * q)), sn = cs * t;
      for (let p = 0; p < ld; p++) {
        const xa = H[pi + p], xb = H[pj + p];
        H[pi + p] = xa * cs - xb * sn;
        H[pj + p] = xa * sn + xb * cs;
        const ya = H[qi + p], yb = H[qj + p];
        H[qi + p] = ya * cs - yb * sn;
        H[qj + p] = ya * sn + yb * cs;
      }
      let na = a - t * g, nb = b + t * g;
      if (na < 0.5 * a) na = rowDot(pi, pi);
      if (nb < 0.5 * b) nb = rowDot(pj, pj);
      H[nrm + i] = na;
      H[nrm + j] = nb;
      rot++;
    }
  }
  return rot;
}

export function signCosJs(H: Float64Array, u: number, v: number, n: number, ld: number, d: number, cos: number): void {
  for (let k = 0; k < n; k++) {
    const pu = u + k * ld, pv = v + k * ld;
    let best = 0, bi = 0;
    for (let i = 0; i < d; i++) {
      const a = Math.abs(H[pu + i]);
      if (a > best) {
        best = a;
        bi = i;
      }
    }
    if (H[pu + bi] < 0)
      for (let i = 0; i < ld; i++) {
        H[pu + i] = -H[pu + i];
        H[pv + i] = -H[pv + i];
      }
    let s0 = 0, s1 = 0;
    for (let i = 0; i < ld; i += 2) {
      s0 += H[pu + i] * H[pv + i];
      s1 += H[pu + i + 1] * H[pv + i + 1];
    }
    H[cos + k] = s0 + s1;
  }
}

export function houseLeftJs(H: Float64Array, a: number, ld: number, r0: number, r1: number, c0: number, c1: number, v: number, tau: number, w: number): void {
  const cnt = c1 - c0;
  for (let q = 0; q < cnt; q++) H[w + q] = 0;
  for (let i = r0; i < r1; i++) {
    const vi = H[v + i - r0];
    if (vi === 0) continue;
    const row = a + i * ld + c0;
    for (let q = 0; q < cnt; q++) H[w + q] += vi * H[row + q];
  }
  for (let i = r0; i < r1; i++) {
    const t = tau * H[v + i - r0];
    if (t === 0) continue;
    const row = a + i * ld + c0;
    for (let q = 0; q < cnt; q++) H[row + q] -= t * H[w + q];
  }
}

export function houseRightJs(H: Float64Array, a: number, ld: number, r0: number, r1: number, c0: number, c1: number, v: number, tau: number): void {
  const cnt = c1 - c0;
  for (let i = r0; i < r1; i++) {
    const row = a + i * ld + c0;
    let s = 0;
    for (let q = 0; q < cnt; q++) s += H[row + q] * H[v + q];
    const t = tau * s;
    if (t === 0) continue;
    for (let q = 0; q < cnt; q++) H[row + q] -= t * H[v + q];
  }
}

/** idx: the i32 view of the heap's buffer; idxOff in i32 units; cs offset in doubles. */
export function rotRowsJs(H: Float64Array, idx: Int32Array, base: number, ld: number, len: number, idxOff: number, cs: number, count: number): void {
  for (let t = 0; t < count; t++) {
    const pa = base + idx[idxOff + 2 * t] * ld, pb = base + idx[idxOff + 2 * t + 1] * ld;
    const cc = H[cs + 2 * t], ss = H[cs + 2 * t + 1];
    for (let q = 0; q < len; q++) {
      const xa = H[pa + q], xb = H[pb + q];
      H[pa + q] = cc * xa + ss * xb;
      H[pb + q] = cc * xb - ss * xa;
    }
  }
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

  /** C = A·B, A given as Aᵀ (at, k×m); pk: scratch of m·k doubles for the packed panels. */
  gemmNN(at: number, b: number, cc: number, m: number, n: number, k: number, pk: number): void {
    if (m % 4 || n % 4) throw new RangeError(`gemmNN: bad padding m=${m} n=${n}`);
    if (!this.ex) return gemmNNjs(this.heap, at, b, cc, m, n, k);
    const H = this.heap;
    for (let i = 0; i < m; i += 4) {
      const dst = pk + i * k;
      for (let p = 0; p < k; p++) {
        const src = at + p * m + i, o = dst + 4 * p;
        H[o] = H[src];
        H[o + 1] = H[src + 1];
        H[o + 2] = H[src + 2];
        H[o + 3] = H[src + 3];
      }
    }
    this.ex.gemmNN(pk * 8, b * 8, cc * 8, m, n, k);
  }

  jacobiSweep(x: number, y: number, nrm: number, n: number, ld: number, tol: number): number {
    if (ld % 8) throw new RangeError(`jacobiSweep: ld=${ld} must be a multiple of 8`);
    if (this.ex) return this.ex.jacobiSweep(x * 8, y * 8, nrm * 8, n, ld, tol);
    return jacobiSweepJs(this.heap, x, y, nrm, n, ld, tol);
  }

  /** In-place upper Cholesky of the n×n block at a (stride ld); false if not positive definite. */
  cholUpper(a: number, n: number, ld: number): boolean {
    if (this.ex) return this.ex.cholUpper(a * 8, n, ld) === 1;
    return choleskyUpperInPlace(this.heap, a, n, ld);
  }

  /** Z = R⁻¹ (upper, both stride ld); false on a zero or non-finite diagonal. */
  invUpper(r: number, z: number, n: number, ld: number): boolean {
    if (this.ex) return this.ex.invUpper(r * 8, z * 8, n, ld) === 1;
    return invUpper(this.heap, r, ld, this.heap, z, ld, n);
  }

  /** Householder reflector (v at offset v, length r1−r0) from the left on A[r0:r1, c0:c1]; w: scratch of c1−c0. */
  houseLeft(a: number, ld: number, r0: number, r1: number, c0: number, c1: number, v: number, tau: number, w: number): void {
    if (this.ex) this.ex.houseLeft(a * 8, ld, r0, r1, c0, c1, v * 8, tau, w * 8);
    else houseLeftJs(this.heap, a, ld, r0, r1, c0, c1, v, tau, w);
  }

  /** Householder reflector (v at offset v, length c1−c0) from the right on A[r0:r1, c0:c1]. */
  houseRight(a: number, ld: number, r0: number, r1: number, c0: number, c1: number, v: number, tau: number): void {
    if (this.ex) this.ex.houseRight(a * 8, ld, r0, r1, c0, c1, v * 8, tau);
    else houseRightJs(this.heap, a, ld, r0, r1, c0, c1, v, tau);
  }

  /**
   * `count` plane rotations of row pairs (see rotRows in the module comment). idx: offset in
   * doubles of an area whose bytes hold the i32 pairs (2 per double); cs: offset of (c, s) pairs.
   */
  rotRows(base: number, ld: number, len: number, idx: number, cs: number, count: number): void {
    if (len % 2) throw new RangeError(`rotRows: len=${len} must be even`);
    if (this.ex) this.ex.rotRows(base * 8, ld, len, idx * 8, cs * 8, count);
    else rotRowsJs(this.heap, new Int32Array(this.heap.buffer, this.heap.byteOffset), base, ld, len, idx * 2, cs, count);
  }

  /** Canonical sign of n (u_k, v_k) row pairs (stride ld % 4 = 0) and their cosines into cos[0..n). */
  signCos(u: number, v: number, n: number, ld: number, d: number, cos: number): void {
    if (ld % 4) throw new RangeError(`signCos: ld=${ld} must be a multiple of 4`);
    if (this.ex) this.ex.signCos(u * 8, v * 8, n, ld, d, cos * 8);
    else signCosJs(this.heap, u, v, n, ld, d, cos);
  }
}

/** Rounds n up to a multiple of m. */
let defaultArena: Arena | undefined;

/**
 * The per-thread workspace every caller shares (the modes analysis, the scan's projection
 * planning): one WebAssembly memory per thread, since V8 reserves ~10 GB of address space for each.
 */
export function threadArena(): Arena {
  return (defaultArena ??= new Arena());
}

export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}
