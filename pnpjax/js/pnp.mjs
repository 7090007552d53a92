/*! pnpjax pose solver: neural PnP + Levenberg-Marquardt, no dependencies (pnpjax export --format js). */
// The single injection point: `pnpjax export` replaces this whole line with
// `const GENERATED = JSON.parse('<json>');` (weights, layout, camera, refinement defaults and
// metadata as JSON data; see pnpjax/jsmodule.py). Here it is null: only `createSolver` works.
// Nothing but comments may precede it (web/tools/build_module.mjs minifies what follows it).
const GENERATED = JSON.parse('null');

// Math as locals: shorter once minified.
const { abs, cos, hypot, log, max, min, sin, sqrt } = Math;
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const F64 = (n) => new Float64Array(n);

// pnpjax.refine's constants: depth clamp and minimum depth of every returned point (layout
// units), Marquardt damping, its range and diagonal floor, the ml cost's sigma_3d floor.
const MIN_DEPTH = 1e-3;
const LAMBDA_INIT = 1e-4;
const LAMBDA_MIN = 1e-10;
const LAMBDA_MAX = 1e10;
const DIAG_FLOOR = 1e-6;
const SIGMA_3D_FLOOR = 1e-4;
const SMALL_ANGLE2 = sqrt(840 * 2 ** -52);
// Finite in, finite out (the rules of pnpjax/validate.py): every landmark coordinate and
// intrinsic a finite number within +-MAX_ABS, fx, fy > 0, every normalised coordinate within
// +-MAX_NORMALIZED (a ray 89.94 degrees off axis); at most MAX_ITERS refinement steps.
const MAX_ABS = 1e8;
const MAX_NORMALIZED = 1e3;
const MAX_ITERS = 100;
const COSTS = ['image', 'object', 'ml'];
const SEED = [1, -1, 0.5, 0.5];

/** A short one-line rendering of any value, for error messages. */
function show(v) {
  let text;
  try {
    text = typeof v === 'string' ? JSON.stringify(v.slice(0, 20)) : String(v);
  } catch {
    text = typeof v;
  }
  return text.replace(/[\r\n\u2028\u2029]/g, ' ').slice(0, 40);
}

function fail(where, message) {
  throw new Error(`pnpjax ${where}: ${message}`);
}

/** Trunk weights as [kernel (n x m, row-major), bias (m)] Float64Arrays per layer. */
function decodeWeights(g) {
  const raw = atob(g.weights);
  const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  let offset = 0;
  let tensor = 0;
  const read = (n) => {
    const [s, m] = (g.quant[tensor++] || []).map(Math.fround);
    return F64(n).map(() => {
      if (g.dtype === 'float32') return view.getFloat32((offset += 4) - 4, true);
      if (g.dtype === 'uint8') return Math.fround(bytes[offset++] * s + m); // as tfjs-core decodes it
      const h = view.getUint16((offset += 2) - 2, true);
      const e = (h >> 10) & 31;
      return (h >> 15 ? -1 : 1) * 2 ** ((e || 1) - 15) * (!!e + (h & 1023) / 1024);
    });
  };
  const layers = g.layers.map(([n, m, relu]) => [read(n * m), read(m), n, m, relu]);
  if (offset !== bytes.length) fail('module', 'weights do not match the layer shapes');
  return layers;
}

/**
 * A solver from generated data (the value `pnpjax export` injects). Its functions reuse buffers
 * allocated here: no allocation per call beyond the returned pose.
 */
export function createSolver(g) {
  const K = g.k;
  const N2 = 2 * K;
  const GL = g.gl;
  const NET = decodeWeights(g);
  const YS = g.yStd.map(Math.fround);
  const YM = g.yMean.map(Math.fround);
  const XS = g.xStandard?.map((a) => a.map(Math.fround));
  const PTS = F64(3 * K).map((_, i) => Math.fround(g.points[i]));
  const { iterations: ITERS, cost: COST, sigma3d: SIGMA_3D, noise2d: NOISE_2D } = g.refine;

  // Layout centroid and RMS radius: the move-in-front start and the ml cost's scale.
  const C = [0, 1, 2].map((i) => PTS.reduce((s, v, j) => s + (j % 3 === i ? v / K : 0), 0));
  const RAD = sqrt(PTS.reduce((s, v, j) => s + (v - C[j % 3]) ** 2 / K, 0));

  // Scratch buffers.
  const width = max(N2, ...NET.map((l) => l[3]));
  const hA = F64(width);
  const hB = F64(width);
  const XY = F64(N2); // observed normalised coordinates (OpenCV frame)
  const RAY = F64(3 * K); // unit viewing rays (object cost)
  const R = F64(9);
  const POSE = F64(7); // w x y z tx ty tz (OpenCV frame)
  const TRY = F64(7);
  const DQ = F64(4);
  const X = F64(3); // one camera point
  const OUT = F64(7);
  const [JU, JV, JW, S, Y, DELTA] = [0, 0, 0, 0, 0, 0].map(() => F64(6));
  const A = F64(36);
  const L = F64(36);
  // Normal equations (H, half-gradient) of the current pose, and of the trial pose.
  let H = F64(36);
  let GR = F64(6);
  let H2 = F64(36);
  let GR2 = F64(6);
  let front = true;
  let s3sq = 0;
  let s2sq = 0;

  // ------------------------------------------------------------------ inputs

  function intrinsics(cam, where) {
    if (cam == null) return g.camera;
    if (cam === 'seed') return SEED;
    const c = [cam.fx, cam.fy, cam.cx, cam.cy];
    if (!c.every((v) => isNum(v) && abs(v) <= MAX_ABS) || !(c[0] > 0 && c[1] > 0)) {
      fail(where, `camera must be 'seed' or {fx, fy, cx, cy}: finite numbers within +-${MAX_ABS}, fx, fy > 0; got ${c.map(show)}`);
    }
    return c;
  }

  function options(opts, where) {
    const n = opts?.refine ?? ITERS;
    const cost = opts?.cost ?? COST;
    if (!Number.isInteger(n) || n < 0 || n > MAX_ITERS) fail(where, `refine must be an integer in [0, ${MAX_ITERS}], got ${show(n)}`);
    if (!COSTS.includes(cost)) fail(where, `cost must be one of ${COSTS}, got ${show(cost)}`);
    return [n, cost];
  }

  function coordinate(v, c, i, where, row) {
    // (Messages are built only on failure: this runs 2K times per pose.)
    if (!isNum(v) || abs(v) > MAX_ABS) {
      fail(where, `${row}landmark ${i >> 1} ${'xy'[i & 1]} is ${show(v)}, ${isNum(v) ? `outside +-${MAX_ABS}` : 'not a finite number'}`);
    }
    const x = (XY[i] = (v - c[2 + (i & 1)]) / c[i & 1]);
    if (!(abs(x) <= MAX_NORMALIZED)) {
      fail(where, `${row}landmark ${i >> 1} ${'xy'[i & 1]} is ${show(x)} focal lengths off the optical axis (limit ${MAX_NORMALIZED})`);
    }
  }

  /** Landmarks (K [x, y] pairs or 2K numbers) -> XY. */
  function readLandmarks(lm, cam, where) {
    const c = intrinsics(cam, where);
    const n = lm == null || typeof lm === 'string' ? -1 : lm.length;
    if (n !== K && n !== N2) fail(where, `landmarks must be ${K} [x, y] pairs or ${N2} numbers, got ${show(lm?.length ?? lm)}`);
    for (let i = 0; i < N2; i++) {
      const p = n === K ? lm[i >> 1] : lm;
      if (n === K && (p == null || typeof p === 'string' || p.length !== 2)) fail(where, `landmark ${i >> 1} is not an [x, y] pair`);
      coordinate(p[n === K ? i & 1 : i], c, i, where, '');
    }
  }

  // ------------------------------------------------------------------ network

  /** Sets POSE (unit q) from the network on XY; returns its raw t_z (the ml cost's 2D scale). */
  function network() {
    let x = hA;
    let h = hB;
    for (let i = 0; i < N2; i++) x[i] = XS ? (XY[i] - XS[0][i]) / XS[1][i] : XY[i];
    for (const [w, b, n, m, relu] of NET) {
      for (let j = 0; j < m; j++) h[j] = b[j];
      for (let i = 0; i < n; i++) {
        const xi = x[i];
        if (xi !== 0) for (let j = 0, o = i * m; j < m; j++) h[j] += xi * w[o + j];
      }
      if (relu) for (let j = 0; j < m; j++) h[j] = max(h[j], 0);
      const swap = x;
      x = h;
      h = swap;
    }
    const y = x;
    const o = YS.length - 3;
    for (let i = 0; i < YS.length; i++) y[i] = y[i] * YS[i] + YM[i];
    if (o === 6) {
      // 6d head: Gram-Schmidt columns a, b, c = a x b, then the quaternion (Shepperd's method).
      const a = [y[0], y[1], y[2]];
      const na = hypot(...a);
      a.forEach((v, i) => (a[i] = v / na));
      const d = a[0] * y[3] + a[1] * y[4] + a[2] * y[5];
      const b = [0, 1, 2].map((i) => y[3 + i] - d * a[i]);
      const nb = hypot(...b);
      b.forEach((v, i) => (b[i] = v / nb));
      const c = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
      const [r00, r10, r20, r01, r11, r21, r02, r12, r22] = [...a, ...b, ...c];
      const P = [
        [1 + r00 + r11 + r22, r21 - r12, r02 - r20, r10 - r01],
        [r21 - r12, 1 + r00 - r11 - r22, r01 + r10, r02 + r20],
        [r02 - r20, r01 + r10, 1 - r00 + r11 - r22, r12 + r21],
        [r10 - r01, r02 + r20, r12 + r21, 1 - r00 - r11 + r22],
      ];
      const k = [0, 1, 2, 3].reduce((best, i) => (P[i][i] > P[best][best] ? i : best), 0);
      P[k].forEach((v, i) => (POSE[i] = v));
    } else {
      POSE[0] = y[3];
      POSE[1] = y[0];
      POSE[2] = y[1];
      POSE[3] = y[2];
    }
    unit(POSE);
    for (let i = 0; i < 3; i++) POSE[4 + i] = y[o + i];
    return y[o + 2];
  }

  function unit(p) {
    const r = sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2] + p[3] * p[3]);
    for (let i = 0; i < 4; i++) p[i] /= r;
  }

  // ------------------------------------------------------------------ refinement

  /** R = rotation matrix of the (w, x, y, z) quaternion p[0..3], its norm divided out. */
  function rotation(p) {
    const w = p[0];
    const x = p[1];
    const y = p[2];
    const z = p[3];
    const s = 2 / (w * w + x * x + y * y + z * z);
    R[0] = 1 - s * (y * y + z * z);
    R[1] = s * (x * y - z * w);
    R[2] = s * (x * z + y * w);
    R[3] = s * (x * y + z * w);
    R[4] = 1 - s * (x * x + z * z);
    R[5] = s * (y * z - x * w);
    R[6] = s * (x * z - y * w);
    R[7] = s * (y * z + x * w);
    R[8] = 1 - s * (x * x + y * y);
  }

  /** Whether every layout point is at depth > MIN_DEPTH under pose p. */
  function inFront(p) {
    rotation(p);
    for (let k = 0; k < K; k++) {
      if (!(R[6] * PTS[3 * k] + R[7] * PTS[3 * k + 1] + R[8] * PTS[3 * k + 2] + p[6] > MIN_DEPTH)) return false;
    }
    return true;
  }

  function addOuter(u, scale) {
    for (let i = 0; i < 6; i++) for (let j = i; j < 6; j++) H2[6 * i + j] += u[i] * u[j] * scale;
  }

  /**
   * Cost of pose p (pnpjax.refine's "image", "object" or "ml"); sets `front` (every depth >
   * MIN_DEPTH) and, in H2 / GR2, the Gauss-Newton matrix (upper triangle) and half-gradient.
   */
  function evaluate(p, kind) {
    rotation(p);
    front = true;
    H2.fill(0);
    GR2.fill(0);
    let cost = 0;
    for (let k = 0; k < K; k++) {
      for (let i = 0; i < 3; i++) X[i] = R[3 * i] * PTS[3 * k] + R[3 * i + 1] * PTS[3 * k + 1] + R[3 * i + 2] * PTS[3 * k + 2] + p[4 + i];
      const x = X[0];
      const y = X[1];
      const z = X[2];
      front = front && z > MIN_DEPTH;
      const iz = 1 / max(z, MIN_DEPTH);
      const u = x * iz;
      const v = y * iz;
      const ru = u - XY[2 * k];
      const rv = v - XY[2 * k + 1];
      if (kind === 'object') {
        // e = X x m (its norm: X's distance from the ray m); de/dv_a = b_a x m,
        // de/domega_a = X m_a - (m . X) b_a.
        const m = 3 * k;
        const mX = RAY[m] * x + RAY[m + 1] * y + RAY[m + 2] * z;
        for (let i = 0; i < 3; i++) {
          const e = X[(i + 1) % 3] * RAY[m + ((i + 2) % 3)] - X[(i + 2) % 3] * RAY[m + ((i + 1) % 3)];
          for (let a = 0; a < 3; a++) {
            JU[a] = i === a ? 0 : ((a - i + 3) % 3 === 1 ? 1 : -1) * RAY[m + 3 - i - a];
            JU[a + 3] = X[i] * RAY[m + a] - (i === a ? mX : 0);
          }
          cost += e * e;
          addOuter(JU, 1);
          for (let a = 0; a < 6; a++) GR2[a] += JU[a] * e;
        }
        continue;
      }
      // d(u, v)/d(v, omega) for X' = exp(delta) X, with the projection's Jacobian.
      JU[0] = JV[1] = iz;
      JU[1] = JV[0] = 0;
      JU[2] = -u * iz;
      JU[3] = -u * v;
      JU[4] = 1 + u * u;
      JU[5] = -v;
      JV[2] = -v * iz;
      JV[3] = -(1 + v * v);
      JV[4] = u * v;
      JV[5] = u;
      if (kind === 'image') {
        cost += ru * ru + rv * rv;
        addOuter(JU, 1);
        addOuter(JV, 1);
        for (let a = 0; a < 6; a++) GR2[a] += JU[a] * ru + JV[a] * rv;
        continue;
      }
      // ml (pnpjax.refine._ml_terms / _ml_normal_equations): the landmark's covariance is
      // a I + b q q^T, a = s2^2 + b, b = s3^2 / z^2; cost r^T Sigma^-1 r + log det Sigma.
      const b = s3sq * iz * iz;
      const a = s2sq + b;
      const ia = 1 / a;
      const qq = u * u + v * v;
      const D = a + b * qq;
      const kappa = b / D;
      const qr = u * ru + v * rv;
      const rr = ru * ru + rv * rv;
      cost += (rr - kappa * qr * qr) / a + log(a) + log(D);
      const cq = -2 * kappa * qr * ia;
      const su = ru - kappa * qr * u;
      const sv = rv - kappa * qr * v;
      const dqu = 2 * ia * su + cq * su + 2 * kappa * u;
      const dqv = 2 * ia * sv + cq * sv + 2 * kappa * v;
      const dz =
        (-rr * ia * ia +
          kappa * qr * qr * ia * ia +
          (kappa * qr * qr * ia) / D -
          (qr * qr * ia) / D +
          (kappa * qr * qr * qq * ia) / D +
          ia +
          1 / D +
          qq / D) *
        (-2 * b * iz);
      // d z / d(v, omega) = (0, 0, 1, y, -x, 0); p = u Ju + v Jv.
      for (let a = 0; a < 6; a++) {
        GR2[a] += 0.5 * (dqu * JU[a] + dqv * JV[a] + dz * (a === 2 ? 1 : a === 3 ? y : a === 4 ? -x : 0));
        JW[a] = u * JU[a] + v * JV[a];
      }
      addOuter(JU, ia);
      addOuter(JV, ia);
      addOuter(JW, -kappa * ia);
    }
    return cost;
  }

  /** DELTA = A^-1 GR for SPD A (6 x 6): Jacobi-scaled Cholesky; NaN if not positive definite. */
  function solve() {
    for (let i = 0; i < 6; i++) S[i] = 1 / sqrt(A[7 * i]);
    for (let j = 0; j < 6; j++) {
      for (let i = j; i < 6; i++) {
        let s = A[6 * i + j] * S[i] * S[j];
        for (let k = 0; k < j; k++) s -= L[6 * i + k] * L[6 * j + k];
        L[6 * i + j] = i === j ? sqrt(s) : s / L[7 * j];
      }
    }
    for (let i = 0; i < 6; i++) {
      let s = GR[i] * S[i];
      for (let k = 0; k < i; k++) s -= L[6 * i + k] * Y[k];
      Y[i] = s / L[7 * i];
    }
    for (let i = 5; i >= 0; i--) {
      let s = Y[i];
      for (let k = i + 1; k < 6; k++) s -= L[6 * k + i] * DELTA[k];
      DELTA[i] = s / L[7 * i];
    }
    for (let i = 0; i < 6; i++) DELTA[i] *= -S[i];
  }

  /** TRY = SE3.exp(DELTA) @ POSE, DELTA = (v, omega); series near 0 (pnpjax.refine._retract). */
  function retract() {
    const [v0, v1, v2, w0, w1, w2] = DELTA;
    const th2 = w0 * w0 + w1 * w1 + w2 * w2;
    const small = th2 < SMALL_ANGLE2;
    const th = sqrt(small ? 1 : th2);
    const sh = sin(0.5 * th);
    const ch = cos(0.5 * th);
    const hs = small ? 0.5 - th2 / 48 + (th2 * th2) / 3840 : sh / th;
    const a = 2 * hs * hs;
    const b = small ? 1 / 6 - th2 / 120 + (th2 * th2) / 5040 : (th - 2 * sh * ch) / (th2 * th);
    const aw = (DQ[0] = small ? 1 - th2 / 8 + (th2 * th2) / 384 : ch);
    const ax = (DQ[1] = w0 * hs);
    const ay = (DQ[2] = w1 * hs);
    const az = (DQ[3] = w2 * hs);
    const bw = POSE[0];
    const bx = POSE[1];
    const by = POSE[2];
    const bz = POSE[3];
    const tx = POSE[4];
    const ty = POSE[5];
    const tz = POSE[6];
    rotation(DQ);
    const c0 = w1 * v2 - w2 * v1;
    const c1 = w2 * v0 - w0 * v2;
    const c2 = w0 * v1 - w1 * v0;
    TRY[0] = aw * bw - ax * bx - ay * by - az * bz;
    TRY[1] = aw * bx + ax * bw + ay * bz - az * by;
    TRY[2] = aw * by - ax * bz + ay * bw + az * bx;
    TRY[3] = aw * bz + ax * by - ay * bx + az * bw;
    TRY[4] = R[0] * tx + R[1] * ty + R[2] * tz + v0 + a * c0 + b * (w1 * c2 - w2 * c1);
    TRY[5] = R[3] * tx + R[4] * ty + R[5] * tz + v1 + a * c1 + b * (w2 * c0 - w0 * c2);
    TRY[6] = R[6] * tx + R[7] * ty + R[8] * tz + v2 + a * c2 + b * (w0 * c1 - w1 * c0);
  }

  /**
   * Levenberg-Marquardt from POSE on XY, `iters` steps of `kind` (pnpjax.refine.refine_pose: a
   * step is taken only if every point stays in front and the cost drops). A zero or non-finite
   * start rotation becomes the identity, a non-finite translation the origin; a start with a
   * point behind the camera keeps its rotation and is re-placed in front (weak perspective).
   */
  function refine(iters, kind, tz0) {
    const n2 = POSE[0] ** 2 + POSE[1] ** 2 + POSE[2] ** 2 + POSE[3] ** 2;
    if (!(isNum(n2) && n2 > 0)) POSE.set([1, 0, 0, 0]);
    if (!(isNum(POSE[4]) && isNum(POSE[5]) && isNum(POSE[6]))) POSE[4] = POSE[5] = POSE[6] = 0;
    unit(POSE);
    if (!inFront(POSE)) moveInFront();
    if (!iters) return;
    for (let k = 0; k < K; k++) {
      const n = sqrt(XY[2 * k] * XY[2 * k] + XY[2 * k + 1] * XY[2 * k + 1] + 1);
      RAY.set([XY[2 * k] / n, XY[2 * k + 1] / n, 1 / n], 3 * k);
    }
    // refine_ml: the 2D std from the starting depth, a floor on the 3D std.
    s2sq = ((NOISE_2D * RAD) / (tz0 > MIN_DEPTH ? tz0 : RAD)) ** 2;
    s3sq = max(SIGMA_3D, SIGMA_3D_FLOOR * RAD) ** 2;
    let cost = evaluate(POSE, kind);
    swapNormals();
    let lam = LAMBDA_INIT;
    for (let it = 0; it < iters; it++) {
      let dMax = 0;
      for (let i = 0; i < 6; i++) dMax = max(dMax, H[7 * i]);
      for (let i = 0; i < 6; i++) {
        for (let j = i; j < 6; j++) A[6 * i + j] = A[6 * j + i] = H[6 * i + j];
        A[7 * i] += lam * max(H[7 * i], DIAG_FLOOR * dMax);
      }
      solve();
      retract();
      const next = evaluate(TRY, kind);
      let ok = front && next < cost;
      for (let i = 0; i < 7; i++) ok = ok && isNum(TRY[i]);
      if (ok) {
        POSE.set(TRY);
        cost = next;
        swapNormals();
      }
      lam = min(max(ok ? lam * 0.1 : lam * 10, LAMBDA_MIN), LAMBDA_MAX);
    }
    unit(POSE);
  }

  function swapNormals() {
    const h = H;
    const gr = GR;
    H = H2;
    GR = GR2;
    H2 = h;
    GR2 = gr;
  }

  /** Keep POSE's rotation; put the layout centroid on the ray through the landmarks' mean, at the
   * depth where its spread matches theirs, at least one radius beyond the nearest point. */
  function moveInFront() {
    rotation(POSE);
    const Rc = [0, 1, 2].map((i) => R[3 * i] * C[0] + R[3 * i + 1] * C[1] + R[3 * i + 2] * C[2]);
    let rad3 = 0;
    let near = -Infinity;
    let mu = 0;
    let mv = 0;
    let rad2 = 0;
    for (let k = 0; k < K; k++) {
      const P = [0, 1, 2].map(
        (i) => R[3 * i] * (PTS[3 * k] - C[0]) + R[3 * i + 1] * (PTS[3 * k + 1] - C[1]) + R[3 * i + 2] * (PTS[3 * k + 2] - C[2]),
      );
      rad3 += (P[0] ** 2 + P[1] ** 2 + P[2] ** 2) / K;
      near = max(near, -P[2]);
      mu += XY[2 * k] / K;
      mv += XY[2 * k + 1] / K;
    }
    for (let k = 0; k < K; k++) rad2 += ((XY[2 * k] - mu) ** 2 + (XY[2 * k + 1] - mv) ** 2) / K;
    rad3 = sqrt(rad3);
    rad2 = sqrt(rad2);
    const zMin = near + max(rad3, 2 * MIN_DEPTH);
    const zWp = rad3 / (rad2 > 0 ? rad2 : 1);
    const z = rad2 > 0 && isNum(zWp) ? max(zWp, zMin) : zMin;
    const t = [mu * z - Rc[0], mv * z - Rc[1], z - Rc[2]];
    if (t.every(isNum)) POSE.set(t, 4);
    else POSE[6] = t[2];
  }

  /** POSE (OpenCV frame) -> OUT = qx qy qz qw tx ty tz in the export frame, w >= 0. */
  function output() {
    // OpenCV -> OpenGL camera frame: a 180-degree rotation about x, applied on the left:
    // (w, x, y, z) -> (-x, w, -z, y), t -> (tx, -ty, -tz).
    const flip = GL ? -1 : 1;
    const w = GL ? -POSE[1] : POSE[0];
    const x = GL ? POSE[0] : POSE[1];
    const y = GL ? -POSE[3] : POSE[2];
    const z = GL ? POSE[2] : POSE[3];
    const s = w < 0 ? -1 : 1;
    OUT[0] = s * x;
    OUT[1] = s * y;
    OUT[2] = s * z;
    OUT[3] = s * w;
    OUT[4] = POSE[4];
    OUT[5] = flip * POSE[5];
    OUT[6] = flip * POSE[6];
  }

  function result() {
    output();
    return {
      quaternion: [OUT[0], OUT[1], OUT[2], OUT[3]],
      translation: [OUT[4], OUT[5], OUT[6]],
    };
  }

  // ------------------------------------------------------------------ public API

  /**
   * estimatePose(landmarks, camera?, {refine, cost}?) -> {quaternion: [x, y, z, w] unit w >= 0,
   * translation: [x, y, z]}. landmarks: K [x, y] pairs or 2K numbers in metadata.layout order;
   * camera: 'seed', {fx, fy, cx, cy} (pixels) or undefined (the export camera).
   */
  function estimatePose(landmarks, camera, opts) {
    const [iters, kind] = options(opts, 'estimatePose');
    readLandmarks(landmarks, camera, 'estimatePose');
    refine(iters, kind, network());
    return result();
  }

  /** estimatePoses(flat N*K*2 numbers, camera?, {refine, cost, out}?) -> Float64Array N*7 (qx qy qz qw tx ty tz per row). */
  function estimatePoses(flat, camera, opts) {
    const where = 'estimatePoses';
    const [iters, kind] = options(opts, where);
    const c = intrinsics(camera, where);
    const n = flat?.length;
    if (typeof flat === 'string' || !Number.isInteger(n) || n % N2)
      fail(where, `landmarks must be a flat array of N*${N2} numbers, got length ${show(n)}`);
    const out = opts?.out ?? F64((n / N2) * 7);
    if (!ArrayBuffer.isView(out) || out.length !== (n / N2) * 7) fail(where, `out must be a typed array of ${(n / N2) * 7} numbers`);
    for (let r = 0; r < n / N2; r++) {
      for (let i = 0; i < N2; i++) coordinate(flat[r * N2 + i], c, i, where, `row ${r} `);
      refine(iters, kind, network());
      output();
      for (let j = 0; j < 7; j++) out[7 * r + j] = OUT[j];
    }
    return out;
  }

  /**
   * refinePose(landmarks, pose, camera?, {refine, cost}?): the refinement alone from a given pose
   * of the export frame (a warm start, e.g. the previous video frame's pose). Returns as estimatePose.
   */
  function refinePose(landmarks, pose, camera, opts) {
    const where = 'refinePose';
    const [iters, kind] = options(opts, where);
    readLandmarks(landmarks, camera, where);
    const q = pose?.quaternion;
    const t = pose?.translation;
    const v = [q?.[0], q?.[1], q?.[2], q?.[3], t?.[0], t?.[1], t?.[2]];
    if (!v.every((x) => isNum(x) && abs(x) <= MAX_ABS) || q.length !== 4 || t.length !== 3) {
      fail(where, 'pose must be {quaternion: [x, y, z, w], translation: [x, y, z]} of finite numbers');
    }
    let [x, y, z, w, tx, ty, tz] = v;
    if (GL) [w, x, y, z, ty, tz] = [x, -w, z, -y, -ty, -tz];
    POSE.set([w, x, y, z, tx, ty, tz]);
    refine(iters, kind, POSE[6]);
    return result();
  }

  /** toThreeJS(pose, unitScale = 1) -> {position, quaternion} in three.js's camera frame (x right, y up, looking down -z). */
  function toThreeJS(pose, unitScale = 1) {
    let [x, y, z, w] = pose.quaternion;
    let [tx, ty, tz] = pose.translation;
    if (!GL) [w, x, y, z, ty, tz] = [-x, w, -z, y, -ty, -tz];
    const s = w < 0 ? -1 : 1;
    return {
      position: [tx * unitScale, ty * unitScale, tz * unitScale],
      quaternion: [s * x, s * y, s * z, s * w],
    };
  }

  /**
   * threeCamera({camera, unitScale}?) -> {fov, aspect, near, far, view}: three.js PerspectiveCamera
   * settings for the camera the landmarks come from (default: the export camera; a seed export
   * has focal = one image side on each axis, i.e. aspect 1). `camera`: pixel intrinsics {fx, fy,
   * cx, cy, width, height}. `view`, when not null, goes to camera.setViewOffset(fullWidth,
   * fullHeight, offsetX, offsetY, width, height): a principal point off the image centre. near and
   * far: 0.1 and 1000 layout radii, times unitScale (0.01 for cm -> m).
   */
  function threeCamera({ camera, unitScale = 1 } = {}) {
    const c = camera ?? g.metadata.camera;
    const near = 0.1 * RAD * unitScale;
    const far = 1e4 * near;
    if (c.name === 'seed')
      return {
        fov: (360 / Math.PI) * Math.atan(0.5),
        aspect: 1,
        near,
        far,
        view: null,
      };
    const { fx, fy, cx, cy, width, height } = c;
    if (![fx, fy, cx, cy, width, height].every(isNum) || !(min(fx, fy, width, height) > 0)) {
      fail('threeCamera', 'camera must be {fx, fy, cx, cy, width, height} with fx, fy, width, height > 0');
    }
    const view =
      cx === width / 2 && cy === height / 2
        ? null
        : {
            fullWidth: width,
            fullHeight: height,
            offsetX: width / 2 - cx,
            offsetY: height / 2 - cy,
            width,
            height,
          };
    return {
      fov: (360 / Math.PI) * Math.atan(height / 2 / fy),
      aspect: (width * fy) / (height * fx),
      near,
      far,
      view,
    };
  }

  /**
   * selectLandmarks(points) -> the layout's K [x, y] pairs, in layout order, from the whole output
   * of the detector its metadata names (metadata.layout.detector: {name, num_points, indices},
   * e.g. face-api.js's 68 landmarks for faceapi10). `points`: [x, y] pairs or {x, y} objects
   * (face-api.js's `result.landmarks.positions`).
   */
  function selectLandmarks(points) {
    const det = g.metadata.layout.detector;
    if (!det) fail('selectLandmarks', `layout ${show(g.metadata.layout.name)} does not name its detector`);
    if (points == null || typeof points === 'string' || points.length !== det.num_points) {
      fail('selectLandmarks', `${show(det.name)} gives ${det.num_points} points, got ${show(points?.length ?? points)}`);
    }
    return det.indices.map((i) => {
      const p = points[i];
      const xy = p != null && typeof p === 'object' && !('x' in p) ? [p[0], p[1]] : [p?.x, p?.y];
      if (!xy.every(isNum)) fail('selectLandmarks', `point ${i} is not an [x, y] pair or {x, y} of finite numbers`);
      return xy;
    });
  }

  // ------------------------------------------------------------------ tracker (pnpjax.track)

  /**
   * createTracker(options?) -> {update(landmarks, timestampMs, camera?) -> pose or null, reset()}:
   * pnpjax.track's default tracker, frame by frame (a constant-velocity Kalman filter on SE(3)
   * whose measurement is the landmarks: robust Gauss-Newton with the motion prior). landmarks: as
   * estimatePose, or null / [] for a frame without landmarks (the pose is then extrapolated for at
   * most maxCoast s; null before the first landmarks). options: pnpjax.track.TrackerConfig's fields
   * in camelCase (defaults: the export's). reset() forgets the past.
   */
  function createTracker(options) {
    const o = { ...g.track, ...options };
    for (const k in o) {
      const n = /ters$/.test(k); // iterations: integers in [1, MAX_ITERS]
      if (!(k in g.track && isNum(o[k]) && o[k] >= n && (!n || (o[k] % 1 === 0 && o[k] <= MAX_ITERS))))
        fail('createTracker', `bad option ${show(k)}`);
    }
    // 6 x 6 matrices as Float64Array(36), row-major.
    const mat = (f) => F64(36).map((_, k) => f((k / 6) | 0, k % 6));
    const row = (a, i) => a.subarray(6 * i, 6 * i + 6);
    const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);
    const tr = (a) => mat((i, j) => a[6 * j + i]);
    const mul = (a, b) => ((b = tr(b)), mat((i, j) => dot(row(a, i), row(b, j))));
    const mv = (a, v) => v.map((_, i) => dot(row(a, i), v));
    const add = (a, b, y = 1) => a.map((x, k) => x + y * b[k]);
    const diag = (a, b) => mat((i, j) => (i === j ? (i < 3 ? a : b) : 0));
    const where = 'tracker.update';
    const inv = (a) => {
      const r = F64(36);
      A.set(a);
      for (let i = 0; i < 6; i++) {
        GR.fill(0)[i] = 1;
        solve();
        for (let j = 0; j < 6; j++) r[6 * j + i] = -DELTA[j];
      }
      return r;
    };
    const go = (d, p) => (DELTA.set(d), POSE.set(p), retract(), TRY.slice()); // exp(d) p
    const sigma = sqrt((o.noise2d * RAD) ** 2 + o.sigma3d ** 2);
    let s = null; // [pose (w x y z t), twist (v, omega) per s, Ppp, Ppv, Pvv, time s, ok]

    function update(landmarks, timestampMs, camera) {
      if (!isNum(timestampMs)) fail(where, `bad timestampMs ${show(timestampMs)}`);
      const now = timestampMs / 1000;
      let [p, nu, pp, pv, vv, last, ok] = s ?? [];
      const dt = s ? max(now - last, 0) : 0;
      if (landmarks == null || !landmarks.length) {
        if (!s) return null;
        POSE.set(
          ok
            ? go(
                nu.map((x) => x * min(dt, o.coast)),
                p,
              )
            : p,
        );
        return result();
      }
      readLandmarks(landmarks, camera, where);
      network();
      unit(POSE);
      const net = POSE.slice();
      const restart = !ok || dt > o.gap;
      if (restart) {
        // No pose prior, a broad twist prior.
        [p, nu, pp, pv] = [net, F64(6), F64(36), F64(36)];
        vv = diag(o.velStdTrans ** 2, o.velStdRot ** 2);
      } else {
        // Prediction: constant twist; white-noise acceleration, more of it the faster the head moves.
        const w = nu.subarray(3);
        const v = [0, 1, 2].map((i) => nu[i] + w[(i + 1) % 3] * p[4 + ((i + 2) % 3)] - w[(i + 2) % 3] * p[4 + ((i + 1) % 3)]);
        const k = 1 + dot(w, w) / o.speedRot ** 2 + dot(v, v) / o.speedTrans ** 2;
        const qc = diag(k * o.accelTrans, k * o.accelRot);
        p = go(
          nu.map((x) => x * dt),
          p,
        );
        pp = add(add(add(pp, add(pv, tr(pv)), dt), vv, dt * dt), qc, dt ** 3 / 3);
        pv = add(add(pv, vv, dt), qc, (dt * dt) / 2);
        vv = add(vv, qc, dt);
      }
      // Robust Gauss-Newton on the landmarks and the prior; delta: the sum of the steps.
      const ppInv = restart ? pp : inv(pp);
      const delta = F64(6);
      let H;
      for (let it = restart ? o.initIters : o.iters; it--;) {
        rotation(p);
        const obs = [];
        let depth = 0;
        for (let k = 0; k < K; k++) {
          const X = [0, 1, 2].map((i) => dot(R.subarray(3 * i, 3 * i + 3), PTS.subarray(3 * k, 3 * k + 3)) + p[4 + i]);
          const iz = 1 / max(X[2], MIN_DEPTH);
          const ru = X[0] * iz - XY[2 * k];
          const rv = X[1] * iz - XY[2 * k + 1];
          obs.push([X[0] * iz, X[1] * iz, iz, ru, rv, hypot(ru, rv)]);
          depth += X[2];
        }
        const sg = sigma / max(depth / K, MIN_DEPTH);
        const e = obs.map((x) => x[5]).sort((a, b) => a - b);
        const c = o.robust * max(sg, (e[(K - 1) >> 1] + e[K >> 1]) / 2);
        H = ppInv.slice();
        GR.set(mv(ppInv, delta));
        for (const [u, v, iz, ru, rv, ek] of obs) {
          const w = 1 / (1 + (ek / c) ** 2) / sg ** 2;
          const ju = [iz, 0, -u * iz, -u * v, 1 + u * u, -v];
          const jv = [0, iz, -v * iz, -(1 + v * v), u * v, u];
          for (let a = 0; a < 6; a++) {
            GR[a] += w * (ju[a] * ru + jv[a] * rv);
            for (let b = 0; b < 6; b++) H[6 * a + b] += w * (ju[a] * ju[b] + jv[a] * jv[b]);
          }
        }
        A.set(H);
        solve();
        delta.set(add(delta, DELTA));
        p = go(DELTA, p);
      }
      // Kalman update of the twist through the pose-twist covariance.
      const ppNew = inv(H);
      const G = mul(tr(pv), ppInv);
      nu = add(nu, mv(G, delta));
      vv = add(vv, mul(mul(G, add(pp, ppNew, -1)), tr(G)), -1);
      pv = mul(ppNew, tr(G));
      pp = ppNew;
      POSE.set(p);
      unit(POSE);
      evaluate(POSE, 'image'); // sets `front`: every point in front of the camera
      ok = front && [...POSE, ...nu, ...pp, ...pv, ...vv].every(isNum);
      if (!ok) POSE.set(net);
      s = [POSE.slice(), nu, pp, pv, vv, now, ok];
      return result();
    }
    return { update, reset: () => (s = null) };
  }

  return {
    metadata: g.metadata,
    estimatePose,
    estimatePoses,
    refinePose,
    toThreeJS,
    threeCamera,
    selectLandmarks,
    createTracker,
  };
}

const solver = GENERATED && createSolver(GENERATED);
const template = () => fail('module', 'this is the template source; export a checkpoint with `pnpjax export --format js`');

export const metadata = solver?.metadata;
export const estimatePose = solver?.estimatePose ?? template;
export const estimatePoses = solver?.estimatePoses ?? template;
export const refinePose = solver?.refinePose ?? template;
export const toThreeJS = solver?.toThreeJS ?? template;
export const threeCamera = solver?.threeCamera ?? template;
export const selectLandmarks = solver?.selectLandmarks ?? template;
export const createTracker = solver?.createTracker ?? template;
