// The web solver benchmark's measurements, shared by Node (bench_web.mjs) and headless Chromium
// (bench_web.html): every solver on the same landmarks, in one JS process, one after another.
//
// input = {points: [K*3], settings: [{name, n, k, pixels: [N*K*2], intrinsics: [N*4],
//          normalized: [N*K*2], seed: [N*K*2]}], repeats, tfjsSingle}
// solvers: {modules: [{name, mod, options}], cv (OpenCV.js, ready), tf + tfModel (TF.js, cpu backend)}
// Returns {setting: {solver: {poses: [N*7] (OpenCV: rvec(3) tvec(3) + 0; others q(4) t(3)),
//          us_single, us_batch}}}; times are the fastest of `repeats` passes over the set.

const now = () => performance.now();

function fastest(repeats, pass) {
  pass(); // warm-up (JIT tiering), not timed
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    const t0 = now();
    pass();
    best = Math.min(best, now() - t0);
  }
  return best;
}

/** OpenCV.js solvePnP per pose (inputs prepared beforehand); rvec, tvec per row. */
function benchOpenCV(cv, points, s, flag, repeats) {
  const { n, k } = s;
  const obj = cv.matFromArray(k, 3, cv.CV_64F, points);
  const img = new cv.Mat(k, 2, cv.CV_64F);
  const K = cv.Mat.eye(3, 3, cv.CV_64F);
  const dist = cv.Mat.zeros(4, 1, cv.CV_64F);
  const rvec = new cv.Mat();
  const tvec = new cv.Mat();
  const out = new Float64Array(n * 7).fill(NaN);
  const one = (i) => {
    img.data64F.set(s.pixels.subarray(i * 2 * k, (i + 1) * 2 * k));
    const [fx, fy, cx, cy] = s.intrinsics.subarray(4 * i, 4 * i + 4);
    K.data64F[0] = fx;
    K.data64F[2] = cx;
    K.data64F[4] = fy;
    K.data64F[5] = cy;
    let ok = false;
    try {
      ok = cv.solvePnP(obj, img, K, dist, rvec, tvec, false, flag);
    } catch {
      ok = false;
    }
    if (ok) {
      out.set(rvec.data64F, 7 * i);
      out.set(tvec.data64F, 7 * i + 3);
    }
  };
  const ms = fastest(repeats, () => {
    for (let i = 0; i < n; i++) one(i);
  });
  for (const m of [obj, img, K, dist, rvec, tvec]) m.delete();
  return { poses: Array.from(out), us_single: (1000 * ms) / n };
}

/** A pnpjax module: single calls (pixels + per-pose camera) and one batch call (normalised coordinates). */
function benchModule(mod, options, s, repeats) {
  const { n, k } = s;
  const rows = Array.from({ length: n }, (_, i) => s.pixels.subarray(i * 2 * k, (i + 1) * 2 * k));
  const cams = Array.from({ length: n }, (_, i) => {
    const [fx, fy, cx, cy] = s.intrinsics.subarray(4 * i, 4 * i + 4);
    return { fx, fy, cx, cy };
  });
  const single = new Float64Array(n * 7);
  const msSingle = fastest(repeats, () => {
    for (let i = 0; i < n; i++) {
      const p = mod.estimatePose(rows[i], cams[i], options);
      single.set(p.quaternion, 7 * i);
      single.set(p.translation, 7 * i + 4);
    }
  });
  const unit = { fx: 1, fy: 1, cx: 0, cy: 0 };
  const batch = new Float64Array(n * 7);
  const msBatch = fastest(repeats, () => mod.estimatePoses(s.normalized, unit, { ...options, out: batch }));
  let diff = 0;
  for (let i = 0; i < n * 7; i++) diff = Math.max(diff, Math.abs(batch[i] - single[i]) * (i % 7 < 4 ? 1 : 1e-2));
  return { poses: Array.from(single), us_single: (1000 * msSingle) / n, us_batch: (1000 * msBatch) / n, batch_vs_single: diff };
}

/** The original TF.js model (raw standardised outputs): one batch predict, and single predicts on a subset. */
function benchTFJS(tf, model, s, repeats, nSingle) {
  const { n, k } = s;
  let raw;
  const msBatch = fastest(repeats, () => {
    const x = tf.tensor3d(s.seed, [n, k, 2], 'float32');
    const y = model.predict(x);
    raw = y.dataSync();
    tf.dispose([x, y]);
  });
  const m = Math.min(nSingle, n);
  const msSingle = fastest(repeats, () => {
    for (let i = 0; i < m; i++) {
      const x = tf.tensor3d(s.seed.subarray(i * 2 * k, (i + 1) * 2 * k), [1, k, 2], 'float32');
      const y = model.predict(x);
      y.dataSync();
      tf.dispose([x, y]);
    }
  });
  return { poses: Array.from(raw), us_single: (1000 * msSingle) / m, us_batch: (1000 * msBatch) / n };
}

export function runBench(input, { modules = [], cv = null, tf = null, tfModel = null, log = () => {} }) {
  const repeats = input.repeats ?? 3;
  const results = {};
  for (const s0 of input.settings) {
    const s = {
      ...s0,
      pixels: Float64Array.from(s0.pixels),
      intrinsics: Float64Array.from(s0.intrinsics),
      normalized: Float64Array.from(s0.normalized),
      seed: Float32Array.from(s0.seed),
    };
    const r = (results[s.name] = {});
    if (cv) {
      for (const [name, flag] of [
        ['OpenCV.js SQPNP', cv.SOLVEPNP_SQPNP],
        ['OpenCV.js EPNP', cv.SOLVEPNP_EPNP],
        ['OpenCV.js ITERATIVE', cv.SOLVEPNP_ITERATIVE],
      ]) {
        r[name] = benchOpenCV(cv, input.points, s, flag, repeats);
        log(`${s.name} ${name}: ${r[name].us_single.toFixed(1)} us/pose`);
      }
    }
    for (const { name, mod, options } of modules) {
      r[name] = benchModule(mod, options, s, repeats);
      log(`${s.name} ${name}: ${r[name].us_single.toFixed(2)} / ${r[name].us_batch.toFixed(2)} us/pose`);
    }
    if (tf && tfModel) {
      r['original TF.js model'] = benchTFJS(tf, tfModel, s, repeats, input.tfjsSingle ?? 200);
      log(`${s.name} TF.js: ${r['original TF.js model'].us_single.toFixed(1)} us/pose`);
    }
  }
  return results;
}
