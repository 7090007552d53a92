// Synthetic solvers for the module's Node tests: a one-layer "network" whose output is a chosen
// pose (zero kernel, the pose as bias), so the refinement's start is known exactly.

export const LAYOUT = {
  right_eye: [-3.23597, 3.23021, -3.33562],
  left_eye: [3.23597, 3.23021, -3.33562],
  nose_tip: [0, 0.003874, 0.290468],
  mouth_centre: [0, -3.53483, -2.08927],
  right_ear: [-8.04888, 2.22486, -12.6444],
  left_ear: [8.04888, 2.22486, -12.6444],
};
// pnpjax.track.TrackerConfig's defaults (an export carries them as data).
export const TRACK = {
  iters: 3,
  initIters: 5,
  noise2d: 0.03,
  sigma3d: 0.3,
  accelRot: 0.02,
  accelTrans: 400,
  speedRot: 0.05,
  speedTrans: 10,
  velStdRot: 2,
  velStdTrans: 50,
  robust: 3,
  coast: 0.2,
  gap: 1,
};
export const PIXEL = { name: 'pixels', fx: 554.2562584220408, fy: 554.2562584220408, cx: 322.5, cy: 238, width: 640, height: 480 };

/** Generated data for createSolver: the network returns `start` = [qx, qy, qz, qw, tx, ty, tz] (OpenCV frame). */
export function syntheticData(start, { camera = PIXEL, refine = { iterations: 5, cost: 'ml', sigma3d: 0.3, noise2d: 0.03 } } = {}) {
  const points = Object.values(LAYOUT).flat().map(Math.fround);
  const k = points.length / 3;
  const weights = new Float32Array(2 * k * 7 + 7);
  weights.set(start, 2 * k * 7);
  const seed = camera.name === 'seed';
  return {
    metadata: { layout: { name: 'blazeface6', units: 'cm', points: LAYOUT }, camera, units: 'cm' },
    k,
    points,
    camera: seed ? [1, -1, 0.5, 0.5] : [camera.fx, camera.fy, camera.cx, camera.cy],
    gl: seed,
    layers: [[2 * k, 7]],
    dtype: 'float32',
    quant: [],
    xStandard: null,
    yStd: [1, 1, 1, 1, 1, 1, 1],
    yMean: [0, 0, 0, 0, 0, 0, 0],
    refine,
    weights: Buffer.from(weights.buffer).toString('base64'),
  };
}

/** Rotation matrix (row-major) of a unit quaternion [x, y, z, w]. */
export function matrix([x, y, z, w]) {
  return [
    1 - 2 * (y * y + z * z),
    2 * (x * y - z * w),
    2 * (x * z + y * w),
    2 * (x * y + z * w),
    1 - 2 * (x * x + z * z),
    2 * (y * z - x * w),
    2 * (x * z - y * w),
    2 * (y * z + x * w),
    1 - 2 * (x * x + y * y),
  ];
}

/** Camera points (OpenCV frame) of the layout under [qx, qy, qz, qw, tx, ty, tz]. */
export function posed(pose) {
  const R = matrix(pose.slice(0, 4));
  const pts = Object.values(LAYOUT).map((p) => p.map(Math.fround)); // the module's float32 layout
  return pts.map((p) => [0, 1, 2].map((i) => R[3 * i] * p[0] + R[3 * i + 1] * p[1] + R[3 * i + 2] * p[2] + pose[4 + i]));
}

/** Pixel landmarks of the layout under an OpenCV-frame pose. */
export function project(pose, c = PIXEL) {
  return posed(pose).map(([x, y, z]) => [(c.fx * x) / z + c.cx, (c.fy * y) / z + c.cy]);
}

/** Quaternion [x, y, z, w] of a rotation by `angle` radians about a unit `axis`. */
export function axisAngle(axis, angle) {
  const n = Math.hypot(...axis);
  const s = Math.sin(angle / 2) / n;
  return [axis[0] * s, axis[1] * s, axis[2] * s, Math.cos(angle / 2)];
}

/** Rotation angle (degrees) between two unit quaternions. */
export function angleDeg(a, b) {
  // conj(a) * b: its vector part's norm over |w| is tan(angle / 2) (no acos: exact near 0).
  const [x, y, z, w] = a;
  const [p, q, r, s] = b;
  const v = [w * p - x * s - y * r + z * q, w * q + x * r - y * s - z * p, w * r - x * q + y * p - z * s];
  const c = Math.abs(w * s + x * p + y * q + z * r);
  return (2 * Math.atan2(Math.hypot(...v), c) * 180) / Math.PI;
}

/** A small deterministic PRNG (mulberry32). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Generated data of a random MLP (2K -> 16 -> 16 -> 7 or 9) with face-like output statistics:
 * every decoding path (float32, float16, uint8; quat and 6d heads; seed and pixel cameras).
 */
export function randomNetworkData(seed, { dtype = 'float32', rotation = 'quat', camera = PIXEL } = {}) {
  const random = rng(seed);
  const data = syntheticData([0, 0, 0, 1, 0, 0, 60], { camera });
  const out = rotation === '6d' ? 9 : 7;
  const shapes = [
    [12, 16],
    [16, 16],
    [16, out],
  ];
  const values = shapes.flatMap(([n, m]) => [n * m, m]).map((size) => Array.from({ length: size }, () => 2 * random() - 1));
  let bytes;
  let weights;
  const quant = [];
  if (dtype === 'uint8') {
    // Random codes around a random zero code per tensor, as pnpjax/jsmodule.py encode_uint8 writes them.
    const codes = values.map((v) => v.map(() => Math.floor(256 * random())));
    weights = codes.map((c) => {
      const zero = Math.floor(256 * random());
      quant.push([Math.fround(2 / 255), -1, zero]);
      return encodeUint8(c, zero);
    });
    weights = weights.join('');
  } else if (dtype === 'float16') {
    // Halves with a small exponent range (finite, |v| < 2): sign, exponent 10..15, mantissa.
    bytes = new Uint8Array(
      new Uint16Array(
        values.flatMap((v) =>
          v.map(() => ((random() < 0.5) << 15) | ((10 + Math.floor(6 * random())) << 10) | Math.floor(1024 * random())),
        ),
      ).buffer,
    );
  } else {
    bytes = new Uint8Array(Float32Array.from(values.flat()).buffer);
  }
  const std = rotation === '6d' ? [0.5, 0.5, 0.5, 0.5, 0.5, 0.5] : [0.28, 0.27, 0.28, 0.07];
  const mean = rotation === '6d' ? [1, 0, 0, 0, 1, 0] : [0, 0, 0, 0.87];
  return {
    ...data,
    layers: shapes,
    dtype,
    quant,
    yStd: [...std, 20, 20, 14],
    yMean: [...mean, 0, 0, camera.name === 'seed' ? -60 : 60],
    weights: weights ?? Buffer.from(bytes).toString('base64'),
  };
}

/** uint8 codes of one tensor as text (pnpjax/jsmodule.py encode_uint8, written independently). */
export function encodeUint8(codes, zero) {
  const alphabet = [];
  for (let c = 32; c < 127; c++) if (!`"'\\<>&`.includes(String.fromCharCode(c))) alphabet.push(String.fromCharCode(c));
  return codes
    .map((code) => {
      const d = code - zero;
      const z = d >= 0 ? 2 * d : -2 * d - 1;
      if (z < 84) return alphabet[z];
      return alphabet[84 + Math.floor((z - 84) / 89)] + alphabet[(z - 84) % 89];
    })
    .join('');
}
