// The web solver benchmark's measurements, shared by Node (bench_web.mjs) and headless Chromium
// (bench_web_chromium.mjs): every solver on the same landmarks, in one JS process.
//
// input = {points: [K*3], settings: [{name, n, k, pixels: [N*K*2], intrinsics: [N*4],
//          normalized: [N*K*2], seed: [N*K*2]}], repeats, tfjsSingle}
// solvers: {modules: [{name, mod, options}], cv (OpenCV.js, ready), tf + tfModel (TF.js, cpu backend)}
// Returns {setting: {solver: {poses: [N*7] (OpenCV: rvec(3) tvec(3) + 0; others q(4) t(3)),
//          us_single, us_batch}}}. Times: every timed pass of a setting runs once untimed (warm-up,
// and the poses), then `repeats` rounds run every solver's passes one after another (interleaved,
// so that a change of the machine's load hits every solver alike); each time is the fastest round.

const now = () => performance.now();

/** A timed pass: {field, count, run}; `run` is called once untimed before the rounds. */
const pass = (field, count, run) => ({ field, count, run });

/** OpenCV.js solvePnP per pose (inputs prepared beforehand); rvec, tvec per row. */
function benchOpenCV(cv, points, s, flag) {
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
  const result = { poses: out };
  const passes = [
    pass('us_single', n, () => {
      for (let i = 0; i < n; i++) one(i);
    }),
  ];
  const done = () => {
    for (const m of [obj, img, K, dist, rvec, tvec]) m.delete();
    result.poses = Array.from(out);
  };
  return { result, passes, done };
}

/** A pnpjax module: single calls (pixels + per-pose camera) and one batch call (normalised coordinates). */
function benchModule(mod, options, s) {
  const { n, k } = s;
  const rows = Array.from({ length: n }, (_, i) => s.pixels.subarray(i * 2 * k, (i + 1) * 2 * k));
  const cams = Array.from({ length: n }, (_, i) => {
    const [fx, fy, cx, cy] = s.intrinsics.subarray(4 * i, 4 * i + 4);
    return { fx, fy, cx, cy };
  });
  const single = new Float64Array(n * 7);
  const unit = { fx: 1, fy: 1, cx: 0, cy: 0 };
  const batch = new Float64Array(n * 7);
  const result = {};
  const passes = [
    pass('us_single', n, () => {
      for (let i = 0; i < n; i++) {
        const p = mod.estimatePose(rows[i], cams[i], options);
        single.set(p.quaternion, 7 * i);
        single.set(p.translation, 7 * i + 4);
      }
    }),
    pass('us_batch', n, () => mod.estimatePoses(s.normalized, unit, { ...options, out: batch })),
  ];
  const done = () => {
    let diff = 0;
    for (let i = 0; i < n * 7; i++) diff = Math.max(diff, Math.abs(batch[i] - single[i]) * (i % 7 < 4 ? 1 : 1e-2));
    Object.assign(result, { poses: Array.from(single), batch_vs_single: diff });
  };
  return { result, passes, done };
}

/** The original TF.js model (raw standardised outputs): one batch predict, and single predicts on a subset. */
function benchTFJS(tf, model, s, nSingle) {
  const { n, k } = s;
  const result = {};
  const m = Math.min(nSingle, n);
  const passes = [
    pass('us_batch', n, () => {
      const x = tf.tensor3d(s.seed, [n, k, 2], 'float32');
      const y = model.predict(x);
      result.poses = Array.from(y.dataSync());
      tf.dispose([x, y]);
    }),
    pass('us_single', m, () => {
      for (let i = 0; i < m; i++) {
        const x = tf.tensor3d(s.seed.subarray(i * 2 * k, (i + 1) * 2 * k), [1, k, 2], 'float32');
        const y = model.predict(x);
        y.dataSync();
        tf.dispose([x, y]);
      }
    }),
  ];
  return { result, passes, done: () => {} };
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
    const benches = {};
    if (cv) {
      for (const [name, flag] of [
        ['OpenCV.js SQPNP', cv.SOLVEPNP_SQPNP],
        ['OpenCV.js EPNP', cv.SOLVEPNP_EPNP],
        ['OpenCV.js ITERATIVE', cv.SOLVEPNP_ITERATIVE],
      ]) {
        benches[name] = benchOpenCV(cv, input.points, s, flag);
      }
    }
    for (const { name, mod, options } of modules) benches[name] = benchModule(mod, options, s);
    if (tf && tfModel) benches['original TF.js model'] = benchTFJS(tf, tfModel, s, input.tfjsSingle ?? 200);
    for (const b of Object.values(benches)) for (const p of b.passes) p.run();
    for (let round = 0; round < repeats; round++) {
      for (const b of Object.values(benches)) {
        for (const p of b.passes) {
          const t0 = now();
          p.run();
          const us = (1000 * (now() - t0)) / p.count;
          b.result[p.field] = Math.min(b.result[p.field] ?? Infinity, us);
        }
      }
    }
    for (const [name, b] of Object.entries(benches)) {
      b.done();
      r[name] = b.result;
      log(`${s.name} ${name}: ${b.result.us_single.toFixed(2)} / ${b.result.us_batch?.toFixed(2) ?? '-'} us/pose`);
    }
  }
  return results;
}
