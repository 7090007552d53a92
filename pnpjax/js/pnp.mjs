/*! pnpjax pose solver: neural PnP + Levenberg-Marquardt, no dependencies (pnpjax export --format js). */
// The single injection point: `pnpjax export` replaces this whole line with
// `const GENERATED = JSON.parse('<json>');` (weights, layout, camera, refinement defaults and
// metadata as JSON data; see pnpjax/jsmodule.py). Here it is null: only `createSolver` works.
// Nothing but comments may precede it (web/tools/build_module.mjs minifies what follows it).
const GENERATED = JSON.parse('null');

// Math as locals: shorter once minified.
const { abs, atan, cos, exp, fround, log, max, min, sin, sqrt } = Math;
const isNum = Number.isFinite; // false for anything but a finite number
const F64 = (n) => new Float64Array(n);

// pnpjax.refine's constants: depth clamp and minimum depth of every returned point (layout
// units), Marquardt damping, its range and diagonal floor, the ml cost's sigma_3d floor.
const MIN_DEPTH = 1e-3;
const LAMBDA_MIN = 1e-10;
const LAMBDA_MAX = 1e10;
const DIAG_FLOOR = 1e-6;
const SMALL_ANGLE2 = sqrt(840 * 2 ** -52);
// Finite in, finite out (the rules of pnpjax/validate.py): every landmark coordinate and
// intrinsic a finite number within +-MAX_ABS, fx, fy > 0, every normalised coordinate within
// +-MAX_NORMALIZED (a ray 89.94 degrees off axis); at most MAX_ITERS refinement steps.
const MAX_ABS = 1e8;
const MAX_NORMALIZED = 1e3;
const MAX_ITERS = 100;
// `retry` (pnpjax.refine.RETRY_CHI2): an ml fit whose mean per-point r^T Sigma^-1 r is above this
// after `refine` steps is gross (a start in another basin) and gets up to `retry` more steps.
const RETRY_CHI2 = 25;
const COSTS = ['image', 'object', 'ml'];
const SEED = [1, -1, 0.5, 0.5];
// The network's Dense layer in WebAssembly SIMD: the bytes of web/tools/mlp_wasm.mjs, base64
// (written by web/tools/build_module.mjs, which checks it).
const MLP =
  'AGFzbQEAAAABCwFgB39/f39/f38AAggBAWUBbQIAAQMCAQAHBQEBbAAACtACAc0CAwR/AXwGewNAIAggACAHQQN0aisDACILOQMAIAggB0HAAGw2AgggCCALRAAAAAAAAAAAYkEEdGohCCAHQQFqIgcgAUkNAAsDQCAD/QAEACENIAP9AAQQIQ4gA/0ABCAhDyAD/QAEMCEQQQAhCQJAA0AgCSAITw0BIAkrAwD9FCEMIAIgCSgCCGohCiANIAwgCv0ABAD98gH98AEhDSAOIAwgCv0ABBD98gH98AEhDiAPIAwgCv0ABCD98gH98AEhDyAQIAwgCv0ABDD98gH98AEhECAJQRBqIQkMAAsLIAYEQCANIBH99QEhDSAOIBH99QEhDiAPIBH99QEhDyAQIBH99QEhEAsgBSAN/QsEACAFIA79CwQQIAUgD/0LBCAgBSAQ/QsEMCAFQcAAaiEFIANBwABqIQMgAiABQcAAbGohAiAEQQFrIgQNAAsL';

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

/** A number within +-MAX_ABS. */
const finite = (v) => typeof v === 'number' && abs(v) <= MAX_ABS;

/** v if it is an integer in [0, MAX_ITERS] (a number of refinement steps), else an Error. */
function count(v, name, where) {
  if (!Number.isInteger(v) || v < 0 || v > MAX_ITERS) fail(where, `${name} must be an integer in [0, ${MAX_ITERS}], got ${show(v)}`);
  return v;
}

function fail(where, message) {
  throw new Error(`pnpjax ${where}: ${message}`);
}

/** Bytes of a base64 string. */
const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

/** The trunk's tensors (kernel n x m row-major, bias m, per layer), concatenated: a Float64Array of their float32 values. */
function decodeWeights({ weights, dtype, quant, layers }) {
  const sizes = layers.flatMap(([n, m]) => [n * m, m]);
  const values = F64(sizes.reduce((a, b) => a + b));
  if (!(dtype === 'uint8' ? pnpUint8(weights, quant, sizes, values) : pnpFloat(bytes(weights), dtype === 'float16', values))) {
    fail('module', 'weights do not match the layer shapes');
  }
  return values;
}

// ------------------------------------------------------------------ optional parts
// `pnpjax export` leaves out the parts a checkpoint does not need (uint8 or float weights, the 6d
// head, the perspective roll): web/tools/build_module.mjs minifies each `(optional NAME)` part on a line of its own,
// marked /*NAME*/, and pnpjax/jsmodule.py drops the marked lines it does not need. A part uses
// only its arguments and globals.

// (optional uint8)
/**
 * uint8 weights (pnpjax/jsmodule.py `encode_uint8`) -> values (per tensor: the zigzag code z of the
 * byte's offset from the tensor's zero code, one character of the alphabet when z < 84, else two);
 * false unless the text holds exactly values.length codes.
 */
function pnpUint8(text, quant, sizes, values) {
  const alphabet = [...Array(95)].map((_, i) => String.fromCharCode(i + 32)).filter((c) => !`"'\\<>&`.includes(c));
  const next = () => alphabet.indexOf(text[j++]); // -1 past the end or for a foreign character
  const f = Math.fround;
  let i = 0;
  let j = 0;
  sizes.forEach((n, t) => {
    const [s, m, c] = quant[t] ?? [];
    for (n += i; i < n; i++) {
      let z = next();
      if (z >= 84) {
        const lo = next();
        z = lo < 0 ? -1 : 84 + (z - 84) * 89 + lo;
      }
      if (z < 0) j = NaN; // (refused below)
      values[i] = f((c + (z & 1 ? -(z + 1) / 2 : z / 2)) * f(s) + f(m)); // as tfjs-core decodes it
    }
  });
  return j === text.length;
}
// (end uint8)

// (optional float)
/** float16 / float32 little-endian bytes -> values; false unless there are exactly values.length. */
function pnpFloat(bytes, f16, values) {
  const view = new DataView(bytes.buffer);
  const n = f16 ? 2 : 4;
  for (let i = 0; i < values.length && (i + 1) * n <= bytes.length; i++) {
    const h = view.getUint16(2 * i, true);
    const e = (h >> 10) & 31;
    values[i] = f16 ? (h >> 15 ? -1 : 1) * 2 ** ((e || 1) - 15) * (!!e + (h & 1023) / 1024) : view.getFloat32(4 * i, true);
  }
  return values.length * n === bytes.length;
}
// (end float)

// (optional 6d)
/** q = (w, x, y, z) of the 6d head's Gram-Schmidt matrix [a b a x b], a b = y[0..5] (normalised in place), by Shepperd's method. */
function pnp6d(y, q) {
  const norm = (o) => {
    const r = Math.hypot(y[o], y[o + 1], y[o + 2]);
    for (let i = o; i < o + 3; i++) y[i] /= r;
  };
  norm(0);
  const d = y[0] * y[3] + y[1] * y[4] + y[2] * y[5];
  for (let i = 3; i < 6; i++) y[i] -= d * y[i - 3];
  norm(3);
  const [r00, r10, r20, r01, r11, r21] = y;
  const r02 = r10 * r21 - r20 * r11;
  const r12 = r20 * r01 - r00 * r21;
  const r22 = r00 * r11 - r10 * r01;
  const P = [
    [1 + r00 + r11 + r22, r21 - r12, r02 - r20, r10 - r01],
    [r21 - r12, 1 + r00 - r11 - r22, r01 + r10, r02 + r20],
    [r02 - r20, r01 + r10, 1 - r00 + r11 - r22, r12 + r21],
    [r10 - r01, r02 + r20, r12 + r21, 1 - r00 - r11 + r22],
  ];
  let k = 0;
  for (let i = 1; i < 4; i++) if (P[i][i] > P[k][k]) k = i;
  q.set(P[k]);
}
// (end 6d)

// (optional perspective)
/**
 * roll 'perspective': QC = the smallest turn of the optical axis onto the landmarks' mean unit
 * viewing ray (its rotation matrix, row-major, then its quaternion's w, x, y; z = 0); XP = XY (2K
 * normalised coordinates) seen by the camera turned so (a homography). Returns XP.
 */
function pnpPerspective(XY, QC, XP) {
  let rx = 0;
  let ry = 0;
  let rz = 0;
  for (let k = 0; k < XY.length; k += 2) {
    const inv = 1 / Math.sqrt(XY[k] * XY[k] + XY[k + 1] * XY[k + 1] + 1);
    rx += XY[k] * inv;
    ry += XY[k + 1] * inv;
    rz += inv;
  }
  const qw0 = Math.sqrt(rx * rx + ry * ry + rz * rz) + rz;
  const n = Math.sqrt(rx * rx + ry * ry + qw0 * qw0);
  const qx = -ry / n;
  const qy = rx / n;
  const qw = qw0 / n;
  QC.set([1 - 2 * qy * qy, 2 * qx * qy, 2 * qy * qw, 2 * qx * qy, 1 - 2 * qx * qx, -2 * qx * qw]);
  QC.set([-2 * qy * qw, 2 * qx * qw, 1 - 2 * (qx * qx + qy * qy), qw, qx, qy], 6);
  for (let k = 0; k < XY.length; k += 2) {
    const u = XY[k];
    const v = XY[k + 1];
    const iz = 1 / Math.max(QC[2] * u + QC[5] * v + QC[8], 1e-6);
    XP[k] = (QC[0] * u + QC[3] * v + QC[6]) * iz;
    XP[k + 1] = (QC[1] * u + QC[4] * v + QC[7]) * iz;
  }
  return XP;
}

/** roll 'perspective', back to the real camera: q <- q_c q, t <- R_c t (POSE: w x y z t). */
function pnpPerspectiveBack(POSE, QC) {
  const [w, qx, qy, qz, tx, ty, tz] = POSE;
  const [cw, cx, cy] = [QC[9], QC[10], QC[11]];
  POSE.set([cw * w - cx * qx - cy * qy, cw * qx + cx * w + cy * qz, cw * qy - cx * qz + cy * w]);
  POSE[3] = cw * qz + cx * qy - cy * qx;
  for (let i = 0; i < 3; i++) POSE[4 + i] = QC[3 * i] * tx + QC[3 * i + 1] * ty + QC[3 * i + 2] * tz;
}
// (end perspective)

/**
 * A solver from generated data (the value `pnpjax export` injects). Its functions reuse buffers
 * allocated here: no allocation per call beyond the returned pose.
 */
export function createSolver(g) {
  const PTS = Float64Array.from(g.points, fround);
  const K = PTS.length / 3;
  const N2 = 2 * K;
  const GL = g.gl;
  const DIMS = g.layers;
  const NL = DIMS.length;
  const YS = g.yStd.map(fround);
  const YM = g.yMean.map(fround);
  const OUT_DIM = YS.length;
  const XS = g.xStandard?.map((a) => a.map(fround));
  // The recipe (pnpjax.model.ModelConfig): inputs 'centroid' (or 'axis': centroid and axis set),
  // translation 'ray', roll 'canonical' or 'perspective'.
  const { centroid: CENTROID, axis: AXIS, ray: RAY_T, roll: ROLL, perspective: PERSP } = g.model ?? {};
  const { iterations: ITERS, cost: COST, sigma3d: SIGMA_3D, noise2d: NOISE_2D, retry: RETRY = 0 } = g.refine;

  // Layout centroid and RMS radius: the move-in-front start and the ml cost's scale.
  const C = [0, 1, 2].map((i) => PTS.reduce((s, v, j) => s + (j % 3 === i ? v / K : 0), 0));
  const RAD = sqrt(PTS.reduce((s, v, j) => s + (v - C[j % 3]) ** 2 / K, 0));

  // The network runs in WebAssembly (MLP: one SIMD Dense layer, see web/tools/mlp_wasm.mjs) on
  // its memory: at byte 0 the layer's list of non-zero inputs, then the activations x and y, then
  // per layer its kernel and bias in groups of 8 outputs (zero padded), copied there once.
  const width = (max(N2 + 3, ...DIMS.map((l) => l[1])) + 7) & ~7;
  const LAYER = []; // n, kernel, bias, groups per layer (byte offsets)
  let top = 32 * width; // list, x, y
  for (const [n, m] of DIMS) {
    const p = (m + 7) & ~7;
    LAYER.push(n, top, (top += 8 * n * p), p >> 3);
    top += 8 * p;
  }
  const MEM = new WebAssembly.Memory({ initial: (top >> 16) + 1 });
  const layer = new WebAssembly.Instance(new WebAssembly.Module(bytes(MLP)), { e: { m: MEM } }).exports.l;
  const values = decodeWeights(g);
  const HEAP = new Float64Array(MEM.buffer);
  let o = 0;
  DIMS.forEach(([n, m], l) => {
    const w = LAYER[4 * l + 1];
    const b = LAYER[4 * l + 2];
    for (let i = 0; i < n * m; i++) HEAP[w / 8 + ((i % m) >> 3) * n * 8 + ((i / m) | 0) * 8 + ((i % m) & 7)] = values[o++];
    HEAP.set(values.subarray(o, (o += m)), b / 8);
  });
  const X0 = 16 * width;
  const Y0 = 24 * width;
  const hA = HEAP.subarray(X0 / 8, Y0 / 8);
  const hB = HEAP.subarray(Y0 / 8, (Y0 + 8 * width) / 8);
  // Scratch buffers.
  const XY = F64(N2); // observed normalised coordinates (OpenCV frame)
  const CAM = F64(4);
  const RAY = F64(3 * K); // unit viewing rays (object cost)
  const WK = F64(K).fill(1); // per-point weights of the image cost (the tracker's robust weights)
  const EK = F64(K); // per-point image residual norms of the last evaluation
  const R = F64(9);
  const POSE = F64(7); // w x y z tx ty tz (OpenCV frame)
  const TRY = F64(7);
  const DQ = F64(4);
  const OUT = F64(7);
  const [JU, JV, JW, S, Y, DELTA, ID] = [0, 0, 0, 0, 0, 0, 0].map(() => F64(6));
  const A = F64(36);
  const L = F64(36);
  // Normal equations (H, half-gradient) of the current pose, and of the trial pose.
  const GR = F64(6);
  const H2 = F64(36);
  const GR2 = F64(6);
  let iters = 0; // the call's options
  let kind = '';
  let retry = 0;
  let front = true;
  let depthSum = 0;
  let maha = 0; // the ml cost's sum of r^T Sigma^-1 r (no log det) at the last evaluation
  let s3sq = 0;
  let s2sq = 0;

  // ------------------------------------------------------------------ inputs

  /** CAM = the camera's fx, fy, cx, cy. */
  function intrinsics(cam, where) {
    if (cam == null || cam === 'seed') {
      CAM.set(cam ? SEED : g.camera);
      return;
    }
    const { fx, fy, cx, cy } = cam;
    if (!(finite(fx) && finite(fy) && finite(cx) && finite(cy) && fx > 0 && fy > 0)) {
      fail(
        where,
        `camera must be 'seed' or {fx, fy, cx, cy}: finite numbers within +-${MAX_ABS}, fx, fy > 0; got ${[fx, fy, cx, cy].map(show)}`,
      );
    }
    CAM[0] = fx;
    CAM[1] = fy;
    CAM[2] = cx;
    CAM[3] = cy;
  }

  /** iters, kind, retry = the call's options (no allocation: this runs once per call). */
  function options(opts, where) {
    iters = count(opts?.refine ?? ITERS, 'refine', where);
    retry = count(opts?.retry ?? RETRY, 'retry', where);
    kind = opts?.cost ?? COST;
    if (kind !== 'ml' && kind !== 'image' && kind !== 'object') fail(where, `cost must be one of ${COSTS}, got ${show(kind)}`);
  }

  /** XY[i] = landmark coordinate v, normalised with CAM; row: the batch row (-1 for a single pose). */
  function coordinate(v, i, where, row) {
    // (Messages are built only on failure: this runs 2K times per pose.)
    const x = (XY[i] = typeof v === 'number' ? (v - CAM[2 + (i & 1)]) / CAM[i & 1] : NaN);
    if (!(abs(x) <= MAX_NORMALIZED && abs(v) <= MAX_ABS)) {
      const what = `${row < 0 ? '' : `row ${row} `}landmark ${i >> 1} ${'xy'[i & 1]} is `;
      fail(
        where,
        isNum(v) && abs(v) <= MAX_ABS
          ? `${what}${show(x)} focal lengths off the optical axis (limit ${MAX_NORMALIZED})`
          : `${what}${show(v)}, ${isNum(v) ? `outside +-${MAX_ABS}` : 'not a finite number'}`,
      );
    }
  }

  /** Landmarks (K [x, y] pairs or 2K numbers) -> XY. */
  function readLandmarks(lm, cam, where) {
    intrinsics(cam, where);
    const n = lm == null || typeof lm === 'string' ? -1 : lm.length;
    if (n !== K && n !== N2) fail(where, `landmarks must be ${K} [x, y] pairs or ${N2} numbers, got ${show(lm?.length ?? lm)}`);
    for (let i = 0; i < N2; i++) {
      const p = n === K ? lm[i >> 1] : lm;
      if (n === K && (p == null || typeof p === 'string' || p.length !== 2)) fail(where, `landmark ${i >> 1} is not an [x, y] pair`);
      coordinate(p[n === K ? i & 1 : i], i, where, -1);
    }
  }

  // ------------------------------------------------------------------ network

  const XP = F64(N2); // roll 'perspective': XY seen by the camera turned by QC
  const QC = F64(12); // that turn: its rotation matrix (row-major), then its quaternion's w, x, y (z = 0)

  /** Sets POSE (unit q) from the network on XY (pnpjax.model.apply); returns its t_z (the ml cost's 2D scale). */
  function network() {
    const x = hA;
    const P = PERSP ? pnpPerspective(XY, QC, XP) : XY;
    // roll 'canonical': turn the image by -theta about the optical axis, theta the direction of
    // the roll weights' moment of the centred landmarks; the network's pose is turned back by theta.
    let mx = 0;
    let my = 0;
    for (let k = 0; k < N2; k += 2) {
      mx += P[k] / K;
      my += P[k + 1] / K;
    }
    let c = 1;
    let s = 0;
    if (ROLL) {
      let dx = 0;
      let dy = 0;
      for (let k = 0; k < K; k++) {
        dx += ROLL[k] * (P[2 * k] - mx);
        dy += ROLL[k] * (P[2 * k + 1] - my);
      }
      const n = sqrt(dx * dx + dy * dy);
      if (n) {
        c = dx / max(n, 1e-12);
        s = dy / max(n, 1e-12);
      }
    }
    for (let k = 0; k < N2; k += 2) {
      x[k] = c * P[k] + s * P[k + 1];
      x[k + 1] = c * P[k + 1] - s * P[k];
    }
    const cx = c * mx + s * my;
    const cy = c * my - s * mx;
    let F = N2;
    if (CENTROID) {
      // inputs 'centroid': centred on the centroid, divided by the spread; then c and log(spread).
      let ss = 0;
      for (let k = 0; k < N2; k += 2) ss += ((x[k] - cx) ** 2 + (x[k + 1] - cy) ** 2) / K;
      const sp = sqrt(ss + 1e-12);
      for (let k = 0; k < N2; k += 2) {
        x[k] = (x[k] - cx) / sp;
        x[k + 1] = (x[k + 1] - cy) / sp;
      }
      // inputs 'axis' (roll 'perspective'): the real optical axis seen from the turned frame,
      // a = Rz^T R_c^T e_z (the last row of R_c, turned by -theta), projected; else the centroid.
      const az = max(QC[8], 1e-6);
      x[F++] = AXIS ? (c * QC[6] + s * QC[7]) / az : cx;
      x[F++] = AXIS ? (c * QC[7] - s * QC[6]) / az : cy;
      x[F++] = log(sp);
    }
    if (XS) for (let i = 0; i < F; i++) x[i] = (x[i] - XS[0][i]) / XS[1][i];
    let xo = X0;
    let yo = Y0;
    for (let l = 0; l < NL; l++) {
      layer(xo, LAYER[4 * l], LAYER[4 * l + 1], LAYER[4 * l + 2], LAYER[4 * l + 3], yo, l < NL - 1);
      const t = xo;
      xo = yo;
      yo = t;
    }
    const y = xo === X0 ? hA : hB;
    const o = OUT_DIM - 3;
    for (let i = 0; i < OUT_DIM; i++) y[i] = y[i] * YS[i] + YM[i];
    if (RAY_T) {
      // translation 'ray': t = exp(a) (centroid + b, 1).
      const depth = exp(min(max(y[o], -20), 20));
      y[o] = depth * (cx + y[o + 1]);
      y[o + 1] = depth * (cy + y[o + 2]);
      y[o + 2] = depth;
    }
    // POSE = (w, x, y, z) of the head: the quaternion, or the 6d head's Gram-Schmidt matrix
    // [a b a x b] through Shepperd's method; then turned by theta about z (t too).
    if (o === 6) pnp6d(y, POSE);
    else {
      POSE[0] = y[3];
      POSE[1] = y[0];
      POSE[2] = y[1];
      POSE[3] = y[2];
    }
    unit(POSE);
    POSE[4] = c * y[o] - s * y[o + 1];
    POSE[5] = s * y[o] + c * y[o + 1];
    POSE[6] = y[o + 2];
    if (s || c < 0) {
      // the half angle's cosine and sine from (c, s) = (cos, sin) theta, theta in (-pi, pi]
      // (theta = pi, s = 0: the upside-down face, turned by half a turn)
      const hc = sqrt((1 + c) / 2);
      const hs = (s < 0 ? -1 : 1) * sqrt((1 - c) / 2);
      const w = POSE[0];
      const qx = POSE[1];
      const qy = POSE[2];
      const qz = POSE[3];
      POSE[0] = hc * w - hs * qz;
      POSE[1] = hc * qx - hs * qy;
      POSE[2] = hc * qy + hs * qx;
      POSE[3] = hc * qz + hs * w;
    }
    if (PERSP) pnpPerspectiveBack(POSE, QC);
    return POSE[6];
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

  /** H2 (upper triangle) += sa (a a^T + b b^T) + sc c c^T */
  function addOuter(a, b, c, sa, sc) {
    for (let i = 0; i < 6; i++) {
      const ai = sa * a[i];
      const bi = sa * b[i];
      const ci = sc * c[i];
      for (let j = i; j < 6; j++) H2[6 * i + j] += ai * a[j] + bi * b[j] + ci * c[j];
    }
  }

  /** JU, JV = d(u, v)/d(v, omega) for X' = exp(delta) X, with the projection's Jacobian. */
  function jacobian(u, v, iz) {
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
  }

  /**
   * Cost of pose p (pnpjax.refine's "image" (the default), "object" or "ml"); sets `front` (every depth >
   * MIN_DEPTH), `depthSum`, EK (the image cost's residual norms), `maha` (ml) and, in H2 / GR2, the Gauss-Newton matrix
   * (upper triangle) and half-gradient, if `normals` (else only the cost: a trial step needs the
   * normal equations only once taken). The image cost weighs point k by WK[k] (1 but in the tracker).
   */
  function evaluate(p, kind = 'image', normals) {
    rotation(p);
    front = true;
    depthSum = 0;
    maha = 0;
    if (normals) {
      H2.fill(0);
      GR2.fill(0);
    }
    let cost = 0;
    let det = 1;
    for (let k = 0; k < K; k++) {
      const px = PTS[3 * k];
      const py = PTS[3 * k + 1];
      const pz = PTS[3 * k + 2];
      const x = R[0] * px + R[1] * py + R[2] * pz + p[4];
      const y = R[3] * px + R[4] * py + R[5] * pz + p[5];
      const z = R[6] * px + R[7] * py + R[8] * pz + p[6];
      front = front && z > MIN_DEPTH;
      depthSum += z;
      const iz = 1 / max(z, MIN_DEPTH);
      const u = x * iz;
      const v = y * iz;
      const ru = u - XY[2 * k];
      const rv = v - XY[2 * k + 1];
      if (kind === 'object') {
        // e = X x m (its norm: X's distance from the ray m); de/dv = [.]_x m's rows,
        // de/domega_a = X m_a - (m . X) b_a.
        const m0 = RAY[3 * k];
        const m1 = RAY[3 * k + 1];
        const m2 = RAY[3 * k + 2];
        const mX = m0 * x + m1 * y + m2 * z;
        const e0 = y * m2 - z * m1;
        const e1 = z * m0 - x * m2;
        const e2 = x * m1 - y * m0;
        cost += e0 * e0 + e1 * e1 + e2 * e2;
        if (!normals) continue;
        JU.set([0, m2, -m1, x * m0 - mX, x * m1, x * m2]);
        JV.set([-m2, 0, m0, y * m0, y * m1 - mX, y * m2]);
        JW.set([m1, -m0, 0, z * m0, z * m1, z * m2 - mX]);
        addOuter(JU, JV, JW, 1, 1);
        for (let a = 0; a < 6; a++) GR2[a] += JU[a] * e0 + JV[a] * e1 + JW[a] * e2;
        continue;
      }
      if (kind === 'image') {
        const wk = WK[k];
        const rr = ru * ru + rv * rv;
        EK[k] = sqrt(rr);
        cost += wk * rr;
        if (!normals) continue;
        jacobian(u, v, iz);
        addOuter(JU, JV, JU, wk, 0);
        for (let a = 0; a < 6; a++) GR2[a] += wk * (JU[a] * ru + JV[a] * rv);
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
      maha += (rr - kappa * qr * qr) * ia;
      // log det: the product of the points' a D, one log per evaluation (V8 calls out for each)
      det *= a * D;
      if (!(det > 1e-150 && det < 1e150)) {
        cost += log(det);
        det = 1;
      }
      if (!normals) continue;
      jacobian(u, v, iz);
      const cq = -2 * kappa * qr * ia;
      const su = ru - kappa * qr * u;
      const sv = rv - kappa * qr * v;
      const dqu = 2 * ia * su + cq * su + 2 * kappa * u;
      const dqv = 2 * ia * sv + cq * sv + 2 * kappa * v;
      const q2 = qr * qr * ia;
      const dz = (ia * (1 + kappa * q2 - rr * ia) + (1 + qq + q2 * (kappa * (1 + qq) - 1)) / D) * (-2 * b * iz);
      // d z / d(v, omega) = (0, 0, 1, y, -x, 0); p = u Ju + v Jv.
      for (let a = 0; a < 6; a++) {
        GR2[a] += 0.5 * (dqu * JU[a] + dqv * JV[a]);
        JW[a] = u * JU[a] + v * JV[a];
      }
      GR2[2] += 0.5 * dz;
      GR2[3] += 0.5 * dz * y;
      GR2[4] -= 0.5 * dz * x;
      addOuter(JU, JV, JW, ia, -kappa * ia);
    }
    return cost + maha + log(det);
  }

  /** DELTA = -A^-1 GR for SPD A (6 x 6) and GR (6): Jacobi-scaled Cholesky; NaN if not positive definite. */
  function solve(GR) {
    for (let i = 0; i < 6; i++) S[i] = 1 / sqrt(A[7 * i]);
    for (let j = 0; j < 6; j++) {
      for (let i = j; i < 6; i++) {
        let s = A[6 * i + j] * S[i] * S[j];
        for (let k = 0; k < j; k++) s -= L[6 * i + k] * L[6 * j + k];
        L[6 * i + j] = i === j ? sqrt(s) : s * ID[j];
        if (i === j) ID[j] = 1 / L[7 * j]; // (reciprocals: multiplications below, not divisions)
      }
    }
    for (let i = 0; i < 6; i++) {
      let s = GR[i] * S[i];
      for (let k = 0; k < i; k++) s -= L[6 * i + k] * Y[k];
      Y[i] = s * ID[i];
    }
    for (let i = 5; i >= 0; i--) {
      let s = Y[i];
      for (let k = i + 1; k < 6; k++) s -= L[6 * k + i] * DELTA[k];
      DELTA[i] = s * ID[i];
    }
    for (let i = 0; i < 6; i++) DELTA[i] *= -S[i];
  }

  /** TRY = SE3.exp(DELTA) @ POSE, DELTA = (v, omega); series near 0 (pnpjax.refine._retract). */
  function retract() {
    const v0 = DELTA[0];
    const v1 = DELTA[1];
    const v2 = DELTA[2];
    const w0 = DELTA[3];
    const w1 = DELTA[4];
    const w2 = DELTA[5];
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
   * step is taken only if every point stays in front and the cost drops). A zero (|q|^2 below the
   * smallest normal double, where 1 / |q| loses its precision) or non-finite start rotation becomes the identity, a non-finite translation the origin; a start with a
   * point behind the camera keeps its rotation and is re-placed in front (weak perspective).
   * ml: up to `retry` more steps if the fit is then gross (refine_pose's `retry`).
   */
  function refine(iters, kind, tz0, retry) {
    const n2 = POSE[0] ** 2 + POSE[1] ** 2 + POSE[2] ** 2 + POSE[3] ** 2;
    if (!(isNum(n2) && n2 >= 2 ** -1022)) POSE.set([1, 0, 0, 0]); // below the normal range: 0 (JAX's flush to zero)
    if (!(isNum(POSE[4]) && isNum(POSE[5]) && isNum(POSE[6]))) POSE.fill(0, 4);
    unit(POSE);
    rotation(POSE);
    let ahead = true;
    for (let k = 0; k < K; k++) ahead = ahead && R[6] * PTS[3 * k] + R[7] * PTS[3 * k + 1] + R[8] * PTS[3 * k + 2] + POSE[6] > MIN_DEPTH;
    if (!ahead) moveInFront();
    if (!iters) return;
    for (let k = 0; k < K && kind === 'object'; k++) {
      const n = sqrt(XY[2 * k] * XY[2 * k] + XY[2 * k + 1] * XY[2 * k + 1] + 1);
      RAY[3 * k] = XY[2 * k] / n;
      RAY[3 * k + 1] = XY[2 * k + 1] / n;
      RAY[3 * k + 2] = 1 / n;
    }
    // refine_ml: the 2D std from the starting depth, a floor on the 3D std.
    s2sq = ((NOISE_2D * RAD) / (tz0 > MIN_DEPTH ? tz0 : RAD)) ** 2;
    s3sq = max(SIGMA_3D, 1e-4 * RAD) ** 2;
    let cost = evaluate(POSE, kind, true);
    let gross = maha; // of POSE
    let stale = false; // whether H2, GR2 are not POSE's
    let lam = 1e-4;
    for (let it = 0; it < iters + retry; it++) {
      if (it === iters && !(kind === 'ml' && gross / K > RETRY_CHI2)) break;
      if (stale) evaluate(POSE, kind, true);
      stale = false;
      let dMax = 0;
      for (let i = 0; i < 6; i++) dMax = max(dMax, H2[7 * i]);
      for (let i = 0; i < 6; i++) {
        for (let j = i; j < 6; j++) A[6 * i + j] = A[6 * j + i] = H2[6 * i + j];
        A[7 * i] += lam * max(H2[7 * i], DIAG_FLOOR * dMax);
      }
      solve(GR2);
      retract();
      const next = evaluate(TRY, kind);
      let ok = front && next < cost;
      for (let i = 0; i < 7; i++) ok = ok && isNum(TRY[i]);
      if (ok) {
        POSE.set(TRY);
        cost = next;
        gross = maha;
        stale = true;
      }
      lam = min(max(ok ? lam * 0.1 : lam * 10, LAMBDA_MIN), LAMBDA_MAX);
    }
    unit(POSE);
  }

  /** Keep POSE's rotation; put the layout centroid on the ray through the landmarks' mean, at the
   * depth where its spread matches theirs, at least one radius beyond the nearest point. */
  function moveInFront() {
    rotation(POSE);
    const rot = (v) => [0, 1, 2].map((i) => R[3 * i] * v[0] + R[3 * i + 1] * v[1] + R[3 * i + 2] * v[2]);
    const Rc = rot(C);
    let rad3 = 0;
    let near = -Infinity;
    let mu = 0;
    let mv = 0;
    let rad2 = 0;
    for (let k = 0; k < K; k++) {
      const P = rot([0, 1, 2].map((i) => PTS[3 * k + i] - C[i]));
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
    const s = w < 0 ? -1 : 1;
    OUT[0] = s * (GL ? POSE[0] : POSE[1]);
    OUT[1] = s * (GL ? -POSE[3] : POSE[2]);
    OUT[2] = s * (GL ? POSE[2] : POSE[3]);
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
   * estimatePose(landmarks, camera?, {refine, cost, retry}?) -> {quaternion: [x, y, z, w] unit w >= 0,
   * translation: [x, y, z]}. landmarks: K [x, y] pairs or 2K numbers in metadata.layout order;
   * camera: 'seed', {fx, fy, cx, cy} (pixels) or undefined (the export camera).
   */
  function estimatePose(landmarks, camera, opts) {
    options(opts, 'estimatePose');
    readLandmarks(landmarks, camera, 'estimatePose');
    refine(iters, kind, network(), retry);
    return result();
  }

  /** estimatePoses(flat N*K*2 numbers, camera?, {refine, cost, out}?) -> Float64Array N*7 (qx qy qz qw tx ty tz per row). */
  function estimatePoses(flat, camera, opts) {
    const where = 'estimatePoses';
    options(opts, where);
    intrinsics(camera, where);
    const n = flat?.length;
    if (typeof flat === 'string' || !Number.isInteger(n) || n % N2)
      fail(where, `landmarks must be a flat array of N*${N2} numbers, got length ${show(n)}`);
    const out = opts?.out ?? F64((n / N2) * 7);
    if (!ArrayBuffer.isView(out) || out.length !== (n / N2) * 7) fail(where, `out must be a typed array of ${(n / N2) * 7} numbers`);
    for (let r = 0; r < n / N2; r++) {
      for (let i = 0; i < N2; i++) coordinate(flat[r * N2 + i], i, where, r);
      refine(iters, kind, network(), retry);
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
    options(opts, where);
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
    refine(iters, kind, POSE[6], retry);
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
    const seed = c.name === 'seed';
    const { fx, fy, cx, cy, width, height } = seed ? { fx: 1, fy: 1, cx: 0.5, cy: 0.5, width: 1, height: 1 } : c;
    if (![fx, fy, cx, cy, width, height].every(isNum) || !(min(fx, fy, width, height) > 0)) {
      fail('threeCamera', 'camera must be {fx, fy, cx, cy, width, height} with fx, fy, width, height > 0');
    }
    return {
      fov: (360 / Math.PI) * atan(height / 2 / fy),
      aspect: (width * fy) / (height * fx),
      near,
      far: 1e4 * near,
      view:
        cx === width / 2 && cy === height / 2
          ? null
          : { fullWidth: width, fullHeight: height, offsetX: width / 2 - cx, offsetY: height / 2 - cy, width, height },
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
    const where = 'selectLandmarks';
    if (!det) fail(where, `layout ${show(g.metadata.layout.name)} does not name its detector`);
    if (points == null || typeof points === 'string' || points.length !== det.num_points) {
      fail(where, `${show(det.name)} gives ${det.num_points} points, got ${show(points?.length ?? points)}`);
    }
    return det.indices.map((i) => {
      const p = points[i];
      const xy = p != null && typeof p === 'object' && !('x' in p) ? [p[0], p[1]] : [p?.x, p?.y];
      if (!xy.every(isNum)) fail(where, `point ${i} is not an [x, y] pair or {x, y} of finite numbers`);
      return xy;
    });
  }

  // ------------------------------------------------------------------ tracker (pnpjax.track)
  // (tracker-begin: `pnpjax export --format js` leaves the code between the markers out unless --tracker)

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
    // 6 x 6 matrices as Float64Array(36), row-major; a(i, j) for k = 6 i + j.
    const six = [0, 1, 2, 3, 4, 5];
    const mat = (f) => F64(36).map((_, k) => f((k / 6) | 0, k % 6));
    const mul = (a, b) => mat((i, j) => six.reduce((s, k) => s + a[6 * i + k] * b[6 * k + j], 0));
    const tr = (a) => mat((i, j) => a[6 * j + i]);
    const add = (a, b, y = 1) => a.map((x, k) => x + y * b[k]);
    const diag = (a, b) => mat((i, j) => (i === j) * (i < 3 ? a : b));
    const mv = (a, v) => v.map((_, i) => six.reduce((s, j) => s + a[6 * i + j] * v[j], 0));
    const inv = (a) => (A.set(a), mat((i, j) => ((GR.fill(0)[j] = 1), solve(GR), -DELTA[i]))); // (a solve per entry: short)
    const go = (d, p) => (DELTA.set(d), POSE.set(p), retract(), TRY.slice()); // exp(d) p
    const where = 'tracker.update';
    const sigma = sqrt((o.noise2d * RAD) ** 2 + o.sigma3d ** 2);
    let st; // [pose (w x y z t), twist (v, omega) per s, Ppp, Ppv, Pvv, time s, ok]

    function update(landmarks, timestampMs, camera) {
      if (!isNum(timestampMs)) fail(where, `bad timestampMs ${show(timestampMs)}`);
      const now = timestampMs / 1000;
      let [p, nu, pp, pv, vv, last, ok] = st ?? [];
      const dt = st ? max(now - last, 0) : 0;
      if (!landmarks?.length) {
        if (!st) return null;
        POSE.set(
          ok
            ? go(
                nu.map((x) => x * min(dt, o.coast)),
                p,
              )
            : p,
        );
        evaluate(POSE); // sets `front` (image cost): an extrapolation past the camera holds the last pose
        if (!front) POSE.set(p);
        return result();
      }
      readLandmarks(landmarks, camera, where);
      network();
      refine(0); // the refinement's start: finite, every point in front (refine.start_pose)
      const net = POSE.slice();
      const restart = !ok || dt > o.gap;
      if (restart) {
        // No pose prior, a broad twist prior.
        p = net;
        nu = F64(6);
        pp = pv = F64(36); // (never written in place)
        vv = diag(o.velStdTrans ** 2, o.velStdRot ** 2);
      } else {
        // Prediction: constant twist; white-noise acceleration, more of it the faster the head moves.
        let k = 1;
        for (let i = 0; i < 3; i++) {
          const a = (i + 1) % 3;
          const b = (i + 2) % 3;
          k += nu[3 + i] ** 2 / o.speedRot ** 2 + (nu[i] + nu[3 + a] * p[4 + b] - nu[3 + b] * p[4 + a]) ** 2 / o.speedTrans ** 2;
        }
        const qc = diag(k * o.accelTrans, k * o.accelRot);
        p = go(
          nu.map((x) => x * dt),
          p,
        );
        pp = add(add(add(pp, add(pv, tr(pv)), dt), vv, dt * dt), qc, dt ** 3 / 3);
        pv = add(add(pv, vv, dt), qc, (dt * dt) / 2);
        vv = add(vv, qc, dt);
      }
      // Robust Gauss-Newton on the landmarks (the image cost, Cauchy weights) and the prior;
      // delta: the sum of the steps.
      const ppInv = restart ? pp : inv(pp);
      const delta = F64(6);
      for (let it = restart ? o.initIters : o.iters; it--;) {
        evaluate(p); // image cost: EK, depthSum (whatever WK)
        const sg = sigma / max(depthSum / K, MIN_DEPTH);
        const e = EK.slice().sort();
        const c = o.robust * max(sg, (e[(K - 1) >> 1] + e[K >> 1]) / 2);
        for (let k = 0; k < K; k++) WK[k] = 1 / (1 + (EK[k] / c) ** 2) / sg ** 2;
        evaluate(p, 'image', true);
        GR.set(add(GR2, mv(ppInv, delta)));
        A.set(mat((i, j) => H2[6 * min(i, j) + max(i, j)] + ppInv[6 * i + j]));
        H2.set(A);
        solve(GR);
        delta.set(add(delta, DELTA));
        p = go(DELTA, p);
      }
      WK.fill(1);
      // Kalman update of the twist through the pose-twist covariance.
      const ppNew = inv(H2);
      const G = mul(tr(pv), ppInv);
      nu = add(nu, mv(G, delta));
      vv = add(vv, mul(mul(G, add(pp, ppNew, -1)), tr(G)), -1);
      pv = mul(ppNew, tr(G));
      pp = ppNew;
      POSE.set(p);
      unit(POSE);
      evaluate(POSE); // sets `front`: every point in front of the camera
      ok = front && [...POSE, ...nu, ...pp, ...pv, ...vv].every(isNum);
      if (!ok) POSE.set(net);
      st = [POSE.slice(), nu, pp, pv, vv, now, ok];
      return result();
    }
    return { update, reset: () => (st = null) };
  }
  // (tracker-end)

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
