import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena, gemmNNjs, gemmNTjs, houseLeftJs, houseRightJs, jacobiSweepJs, kernelModule, rotRowsJs, roundUp, signCosJs } from '../../src/linalg/kernels.js';
import { choleskyUpperInPlace, invUpper, matmul, transpose } from '../../src/linalg/dense.js';
import { sleb, uleb } from '../../src/linalg/wasm-asm.js';
import { maxAbsDiff, randn, rng } from './helpers.js';

test('LEB128 encoders', () => {
  assert.deepEqual(uleb(0), [0]);
  assert.deepEqual(uleb(127), [127]);
  assert.deepEqual(uleb(128), [0x80, 1]);
  assert.deepEqual(uleb(624485), [0xe5, 0x8e, 0x26]);
  assert.deepEqual(sleb(-1), [0x7f]);
  assert.deepEqual(sleb(63), [63]);
  assert.deepEqual(sleb(64), [0xc0, 0]);
  assert.deepEqual(sleb(-123456), [0xc0, 0xbb, 0x78]);
});

test('the wasm SIMD kernel module compiles on this runtime', () => {
  assert.ok(kernelModule(), 'WebAssembly SIMD unavailable: the JS fallback would be used (slow)');
  assert.equal(new Arena().simd, true);
  assert.equal(new Arena({ wasm: false }).simd, false);
});

test('gemmNT: wasm equals the JS reference and a naive product, plain and symmetric', () => {
  const g = rng(1);
  for (const [m, n, k] of [[4, 2, 2], [8, 6, 10], [64, 64, 768], [12, 20, 34]]) {
    const ar = new Arena();
    const a = 0, b = m * k, c = b + n * k;
    const H = ar.reserve(c + m * n);
    H.set(randn(m * k + n * k, g));
    const ref = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += H[a + i * k + p] * H[b + j * k + p];
      ref[i * n + j] = s;
    }
    ar.gemmNT(a, b, c, m, n, k, n);
    assert.ok(maxAbsDiff(ar.heap.subarray(c, c + m * n), ref) < 1e-12 * k, `gemmNT ${m}x${n}x${k}`);
    const J = Float64Array.from(ar.heap.subarray(0, c + m * n));
    J.fill(0, c);
    gemmNTjs(J, a, b, c, m, n, k, n, false);
    assert.ok(maxAbsDiff(J.subarray(c, c + m * n), ref) < 1e-12 * k);
    if (m === n) {
      // symmetric: A·Aᵀ, upper 4x2 blocks only
      ar.heap.fill(0, c, c + m * n);
      ar.gemmNT(a, a, c, m, m, k, m, true);
      for (let i = 0; i < m; i++) for (let j = i; j < m; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += H[a + i * k + p] * H[a + j * k + p];
        assert.ok(Math.abs(ar.heap[c + i * m + j] - s) < 1e-12 * k);
      }
    }
  }
});

test('gemmNN: wasm equals the JS reference and a naive product', () => {
  const g = rng(2);
  for (const [m, n, k] of [[4, 4, 1], [8, 12, 5], [64, 768, 64], [16, 1280, 80]]) {
    const ar = new Arena();
    const at = 0, b = k * m, c = b + k * n, pk = c + m * n;
    const H = ar.reserve(pk + m * k);
    H.set(randn(k * m + k * n, g));
    const ref = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += H[at + p * m + i] * H[b + p * n + j];
      ref[i * n + j] = s;
    }
    ar.gemmNN(at, b, c, m, n, k, pk);
    assert.ok(maxAbsDiff(ar.heap.subarray(c, c + m * n), ref) < 1e-12 * k, `gemmNN ${m}x${n}x${k}`);
    const J = Float64Array.from(ar.heap.subarray(0, c + m * n));
    gemmNNjs(J, at, b, c, m, n, k);
    assert.ok(maxAbsDiff(J.subarray(c, c + m * n), ref) < 1e-12 * k);
  }
});

test('padding requirements are enforced', () => {
  const ar = new Arena();
  assert.throws(() => ar.gemmNT(0, 0, 0, 3, 2, 2, 2), RangeError);
  assert.throws(() => ar.gemmNN(0, 0, 0, 4, 6, 2, 0), RangeError);
  assert.throws(() => ar.jacobiSweep(0, 0, 0, 4, 4, 1e-14), RangeError);
});

test('jacobiSweep: wasm and JS give the same orthogonalised rows', () => {
  for (const n of [5, 16, 33]) {
    const ld = roundUp(n, 8);
    const x = 0, y = n * ld, nrm = 2 * n * ld;
    const init = (H: Float64Array) => {
      const gg = rng(100 + n);
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let p = 0; p < ld; p++) {
          const v = p < n ? gg() : 0;
          H[x + i * ld + p] = v;
          s += v * v;
          H[y + i * ld + p] = p === i ? 1 : 0;
        }
        H[nrm + i] = s;
      }
    };
    const ar = new Arena();
    const H = ar.reserve(nrm + n);
    init(H);
    const J = new Float64Array(nrm + n);
    init(J);
    const X0 = Float64Array.from(H.subarray(0, n * ld));
    let sw = 0;
    while (ar.jacobiSweep(x, y, nrm, n, ld, 1e-14) > 0 && sw < 50) sw++;
    let swj = 0;
    while (jacobiSweepJs(J, x, y, nrm, n, ld, 1e-14) > 0 && swj < 50) swj++;
    assert.ok(sw < 30 && swj < 30, `converged (${sw}, ${swj} sweeps)`);
    // rows orthogonal, norms tracked exactly, and X_final = Yᵀ-rotation of X0 (X_f = Y·X0)
    for (const M of [ar.heap, J]) {
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          let s = 0;
          for (let p = 0; p < ld; p++) s += M[x + i * ld + p] * M[x + j * ld + p];
          assert.ok(Math.abs(s) <= 1e-13 * Math.sqrt(M[nrm + i] * M[nrm + j]) + 1e-300);
        }
        let s = 0;
        for (let p = 0; p < ld; p++) s += M[x + i * ld + p] ** 2;
        assert.ok(Math.abs(s - M[nrm + i]) < 1e-12 * s);
        for (let p = 0; p < n; p++) {
          let r = 0;
          for (let q = 0; q < n; q++) r += M[y + i * ld + q] * X0[q * ld + p];
          assert.ok(Math.abs(r - M[x + i * ld + p]) < 1e-12);
        }
      }
    }
    // same singular values (row norms) from both implementations
    const sa = Array.from(ar.heap.subarray(nrm, nrm + n)).sort((a, b) => b - a);
    const sj = Array.from(J.subarray(nrm, nrm + n)).sort((a, b) => b - a);
    assert.ok(maxAbsDiff(sa, sj) < 1e-12 * sa[0]);
  }
});

test('Arena.reserve grows and keeps contents', () => {
  const ar = new Arena();
  const n0 = ar.heap.length;
  ar.heap[5] = 42;
  const H = ar.reserve(n0 * 3 + 7);
  assert.ok(H.length >= n0 * 3 + 7);
  assert.equal(ar.heap[5], 42);
  const js = new Arena({ wasm: false });
  js.heap[3] = 7;
  js.reserve(js.heap.length * 5);
  assert.equal(js.heap[3], 7);
});

test('cholUpper / invUpper: wasm equals the JS versions; failures are reported', () => {
  const g = rng(4);
  for (const n of [1, 3, 8, 17, 64]) {
    const ld = roundUp(n, 8);
    const A = randn(n * (n + 3), g);
    const G = matmul(A, transpose(A, n, n + 3), n, n + 3, n);
    const ar = new Arena();
    const H = ar.reserve(2 * ld * ld);
    H.fill(0);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) H[i * ld + j] = G[i * n + j];
    const J = Float64Array.from(H.subarray(0, 2 * ld * ld));
    assert.ok(ar.cholUpper(0, n, ld));
    assert.ok(choleskyUpperInPlace(J, 0, n, ld));
    assert.ok(maxAbsDiff(ar.heap.subarray(0, ld * ld), J.subarray(0, ld * ld)) < 1e-12 * Math.max(...G));
    assert.ok(ar.invUpper(0, ld * ld, n, ld));
    assert.ok(invUpper(J, 0, ld, J, ld * ld, ld, n));
    const Z = ar.heap.subarray(ld * ld, 2 * ld * ld);
    assert.ok(maxAbsDiff(Z, J.subarray(ld * ld)) < 1e-9 * Math.max(...Z.map(Math.abs)));
    // R·Z = I
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += ar.heap[i * ld + k] * Z[k * ld + j];
        assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-10);
      }
  }
  const ar = new Arena();
  ar.reserve(64);
  ar.heap.set([1, 2, 2, 1]);
  assert.equal(ar.cholUpper(0, 2, 2), false);
  ar.heap.set([1, 0, 0, NaN]);
  assert.equal(ar.cholUpper(0, 2, 2), false);
  ar.heap.set([1, 5, 0, 0]);
  assert.equal(ar.invUpper(0, 8, 2, 2), false);
  ar.heap.set([1, 5, 0, Infinity]);
  assert.equal(ar.invUpper(0, 8, 2, 2), false);
});

test('signCos: wasm equals the JS version (sign rule with ties, cosines)', () => {
  const g = rng(5);
  const n = 6, d = 10, ld = 12;
  const ar = new Arena();
  const H = ar.reserve(2 * n * ld + n);
  H.fill(0);
  for (let k = 0; k < n; k++) for (let i = 0; i < d; i++) {
    H[k * ld + i] = g();
    H[n * ld + k * ld + i] = g();
  }
  // a tie: |u_0[2]| = |u_0[5]| = max, the lower index negative → flipped
  H[2] = -9;
  H[5] = 9;
  const J = Float64Array.from(H.subarray(0, 2 * n * ld + n));
  ar.signCos(0, n * ld, n, ld, d, 2 * n * ld);
  signCosJs(J, 0, n * ld, n, ld, d, 2 * n * ld);
  assert.ok(maxAbsDiff(ar.heap.subarray(0, 2 * n * ld + n), J) < 1e-13);
  assert.equal(ar.heap[2], 9);
  assert.equal(ar.heap[5], -9);
  for (let k = 0; k < n; k++) {
    let bi = 0;
    for (let i = 1; i < d; i++) if (Math.abs(ar.heap[k * ld + i]) > Math.abs(ar.heap[k * ld + bi])) bi = i;
    assert.ok(ar.heap[k * ld + bi] > 0);
  }
});

test('houseLeft / houseRight / rotRows: wasm equals the JS versions (odd lengths, unaligned starts)', () => {
  const g = rng(6);
  const ld = 24, rows = 20;
  const A = 0, v = rows * ld, w = v + ld, idx = w + ld, cs = idx + ld;
  const size = cs + 2 * ld;
  const ar = new Arena();
  const H = ar.reserve(size);
  H.fill(0, 0, size);
  H.set(randn(rows * ld, g), A);
  H.set(randn(ld, g), v);
  const J = Float64Array.from(H.subarray(0, size));
  for (const [r0, r1, c0, c1] of [[0, 20, 0, 24], [3, 17, 5, 22], [7, 8, 1, 2], [2, 9, 4, 5]]) {
    const tau = 0.37;
    ar.houseLeft(A, ld, r0, r1, c0, c1, v, tau, w);
    houseLeftJs(J, A, ld, r0, r1, c0, c1, v, tau, w);
    ar.houseRight(A, ld, r0, r1, c0, c1, v, tau);
    houseRightJs(J, A, ld, r0, r1, c0, c1, v, tau);
    assert.ok(maxAbsDiff(ar.heap.subarray(A, A + rows * ld), J.subarray(A, A + rows * ld)) < 1e-12, `${r0}:${r1} × ${c0}:${c1}`);
  }
  // rotations: a chain and a fan, each as (a, b, c, s)
  const rots = [[0, 1], [1, 2], [2, 3], [5, 9], [5, 11], [5, 2]];
  const I = new Int32Array(ar.heap.buffer, ar.heap.byteOffset + idx * 8, 2 * ld);
  const IJ = new Int32Array(J.buffer, J.byteOffset + idx * 8, 2 * ld);
  const IJall = new Int32Array(J.buffer, J.byteOffset, 2 * size);
  rots.forEach(([a, b], t) => {
    const th = 0.3 * (t + 1);
    I[2 * t] = IJ[2 * t] = a;
    I[2 * t + 1] = IJ[2 * t + 1] = b;
    ar.heap[cs + 2 * t] = J[cs + 2 * t] = Math.cos(th);
    ar.heap[cs + 2 * t + 1] = J[cs + 2 * t + 1] = Math.sin(th);
  });
  ar.rotRows(A, ld, ld, idx, cs, rots.length);
  rotRowsJs(J, IJall, A, ld, ld, idx * 2, cs, rots.length);
  assert.ok(maxAbsDiff(ar.heap.subarray(A, A + rows * ld), J.subarray(A, A + rows * ld)) < 1e-12);
  assert.throws(() => ar.rotRows(A, ld, 3, idx, cs, 1), RangeError);
});
