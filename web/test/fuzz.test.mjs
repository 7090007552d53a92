// Property-based fuzzing of the JS module (fast-check, seeded, time-bounded): whatever the
// landmarks, camera, options and network output, a call either throws a one-line Error or returns
// a finite valid pose (unit quaternion with w >= 0, every layout point in front of the camera).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import fc from 'fast-check';

import { createSolver } from '../../pnpjax/js/pnp.mjs';
import { PIXEL, TRACK, randomNetworkData, syntheticData } from './synthetic.mjs';

const SEED = 20251130;
const TIME_LIMIT_MS = 5000;

const number = fc.oneof(
  { weight: 30, arbitrary: fc.double({ min: -2000, max: 2000, noNaN: true }) },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.constantFrom(0, -0, 1e-300, 5e-324, -1.7e308, 1e39, 1e7, 1e7 + 1, Infinity, -Infinity, NaN) },
);
const junk = fc.oneof(fc.string(), fc.constant(null), fc.constant(undefined), fc.boolean(), fc.object(), fc.bigInt());
const pair = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(number, number) },
  { weight: 1, arbitrary: fc.array(fc.oneof(number, junk), { maxLength: 3 }) },
);
const landmarks = fc.oneof(
  { weight: 6, arbitrary: fc.array(pair, { minLength: 6, maxLength: 6 }) },
  { weight: 2, arbitrary: fc.array(number, { minLength: 12, maxLength: 12 }).map((a) => Float64Array.from(a)) },
  { weight: 1, arbitrary: fc.array(fc.oneof(pair, number, junk), { maxLength: 13 }) },
  { weight: 1, arbitrary: junk },
);
const camera = fc.oneof(
  { weight: 6, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.constant('seed') },
  { weight: 3, arbitrary: fc.record({ fx: number, fy: number, cx: number, cy: number }) },
  { weight: 1, arbitrary: junk },
);
const options = fc.oneof(
  fc.constant(undefined),
  fc.record(
    { refine: fc.oneof(fc.integer({ min: 0, max: 8 }), number, junk), cost: fc.oneof(fc.constantFrom('image', 'object', 'ml'), junk) },
    { requiredKeys: [] },
  ),
);
// The network's raw output, i.e. the refinement's start: anything a float32 can hold.
const start = fc.oneof(
  { weight: 4, arbitrary: fc.array(fc.float({ min: -200, max: 200, noNaN: true }), { minLength: 7, maxLength: 7 }) },
  { weight: 1, arbitrary: fc.array(fc.float(), { minLength: 7, maxLength: 7 }) },
);

// Random MLPs through every decoding path (weights, heads, cameras), with the tracker's defaults.
const NETWORKS = [
  randomNetworkData(1, { dtype: 'float32' }),
  randomNetworkData(2, { dtype: 'uint8' }),
  randomNetworkData(3, { dtype: 'float16', rotation: '6d' }),
  randomNetworkData(4, { dtype: 'float32', rotation: '6d', camera: { name: 'seed' } }),
  randomNetworkData(5, { dtype: 'uint8', camera: { name: 'seed' } }),
].map((data) => createSolver({ ...data, track: TRACK }));

function checkPose(solver, p) {
  const q = p.quaternion;
  const t = p.translation;
  assert.ok([...q, ...t].every(Number.isFinite), `not finite: ${JSON.stringify(p)}`);
  assert.ok(Math.abs(Math.hypot(...q) - 1) < 1e-9 && q[3] >= 0, `bad quaternion ${q}`);
  // Depths of the layout's points: z in OpenCV's frame (pixel exports), -z in OpenGL's (seed).
  const [x, y, z, w] = q;
  const sign = solver.metadata.camera.name === 'seed' ? -1 : 1;
  for (const [a, b, c] of Object.values(solver.metadata.layout.points)) {
    const depth = sign * (2 * (x * z - y * w) * a + 2 * (y * z + x * w) * b + (1 - 2 * (x * x + y * y)) * c + t[2]);
    assert.ok(depth > 0, `a point behind the camera: depth ${depth}`);
  }
}

test('fuzz: one-line Error or a finite valid pose', () => {
  let cases = 0;
  let poses = 0;
  let errors = 0;
  fc.assert(
    fc.property(fc.oneof(start, fc.integer({ min: 0, max: NETWORKS.length - 1 })), landmarks, camera, options, (s, lm, cam, opts) => {
      cases++;
      // The refinement from any start (a one-layer network returning it), or a random MLP.
      const solver = typeof s === 'number' ? NETWORKS[s] : createSolver(syntheticData(s, { camera: PIXEL }));
      let pose;
      try {
        pose = solver.estimatePose(lm, cam, opts);
      } catch (e) {
        errors++;
        assert.ok(e instanceof Error, `threw a non-Error: ${e}`);
        assert.ok(e.message.startsWith('pnpjax ') && !/[\n\r\u2028\u2029]/.test(e.message), `bad message: ${e.message}`);
        return;
      }
      poses++;
      checkPose(solver, pose);
    }),
    { seed: SEED, numRuns: 100000, interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: false },
  );
  console.log(`fuzz: ${cases} generated cases (${poses} poses, ${errors} one-line errors), seed ${SEED}, ${TIME_LIMIT_MS / 1000} s limit`);
  assert.ok(cases >= 1000 && poses >= 100, `too few cases: ${cases}, ${poses} poses`);
});

// A video as the tracker sees it: frames of landmarks (or none: null, []), timestamps in ms
// (mostly increasing, sometimes junk), now and then a reset.
const frames = fc.array(
  fc.record({
    lm: fc.oneof({ weight: 6, arbitrary: landmarks }, { weight: 2, arbitrary: fc.constantFrom(null, []) }),
    dt: fc.oneof(
      { weight: 8, arbitrary: fc.double({ min: 0, max: 3000, noNaN: true }) },
      { weight: 1, arbitrary: number },
      { weight: 1, arbitrary: junk },
    ),
    reset: fc.boolean(),
  }),
  { minLength: 1, maxLength: 12 },
);

test('fuzz: the tracker gives null before any landmarks, a one-line Error, or a finite valid pose', () => {
  let cases = 0;
  let poses = 0;
  fc.assert(
    fc.property(fc.oneof(start, fc.integer({ min: 0, max: NETWORKS.length - 1 })), frames, camera, (s, video, cam) => {
      cases++;
      const solver = typeof s === 'number' ? NETWORKS[s] : createSolver({ ...syntheticData(s, { camera: PIXEL }), track: TRACK });
      const tracker = solver.createTracker();
      let started = false;
      let ms = 0;
      for (const f of video) {
        if (f.reset && f !== video[0]) {
          tracker.reset();
          started = false;
        }
        ms = typeof f.dt === 'number' ? (typeof ms === 'number' ? ms : 0) + f.dt : f.dt; // junk timestamps too
        let pose;
        try {
          pose = tracker.update(f.lm, ms, cam);
        } catch (e) {
          assert.ok(e instanceof Error, `threw a non-Error: ${e}`);
          assert.ok(e.message.startsWith('pnpjax ') && !/[\n\r\u2028\u2029]/.test(e.message), `bad message: ${e.message}`);
          continue;
        }
        if (pose === null) {
          assert.ok(!started && !f.lm?.length, 'null after landmarks');
          continue;
        }
        started = true;
        poses++;
        checkPose(solver, pose);
      }
    }),
    { seed: SEED, numRuns: 100000, interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: false },
  );
  console.log(`fuzz: ${cases} generated videos (${poses} tracked poses), seed ${SEED}, ${TIME_LIMIT_MS / 1000} s limit`);
  assert.ok(cases >= 300 && poses >= 100, `too few cases: ${cases}, ${poses} poses`);
});

const BATCH_LIMIT_MS = 2000;
const settings = fc.oneof(
  fc.constant(undefined),
  fc.record({ refine: fc.integer({ min: 0, max: 5 }), cost: fc.constantFrom('image', 'object', 'ml') }),
);
const solverOf = (s) => (typeof s === 'number' ? NETWORKS[s] : createSolver({ ...syntheticData(s, { camera: PIXEL }), track: TRACK }));
const oneLine = (e) => {
  assert.ok(e instanceof Error, `threw a non-Error: ${e}`);
  assert.ok(e.message.startsWith('pnpjax ') && !/[\n\r\u2028\u2029]/.test(e.message), `bad message: ${e.message}`);
};

test('fuzz: estimatePoses gives a one-line Error or N valid poses', () => {
  const flat = fc.oneof(
    fc.array(number, { maxLength: 40 }),
    fc.array(number, { minLength: 24, maxLength: 24 }).map((a) => Float32Array.from(a)),
    junk,
  );
  let rows = 0;
  fc.assert(
    fc.property(fc.oneof(start, fc.integer({ min: 0, max: NETWORKS.length - 1 })), flat, settings, (s, lm, opts) => {
      const solver = solverOf(s);
      let out;
      try {
        out = solver.estimatePoses(lm, undefined, opts);
      } catch (e) {
        return oneLine(e);
      }
      assert.equal(out.length, (lm.length / 12) * 7);
      for (let r = 0; r < out.length / 7; r++, rows++) {
        checkPose(solver, { quaternion: [...out.subarray(7 * r, 7 * r + 4)], translation: [...out.subarray(7 * r + 4, 7 * r + 7)] });
      }
    }),
    { seed: SEED, numRuns: 100000, interruptAfterTimeLimit: BATCH_LIMIT_MS, markInterruptAsFailure: false },
  );
  assert.ok(rows >= 100, `too few rows: ${rows}`);
});

test('fuzz: refinePose from any pose gives a one-line Error or a valid pose', () => {
  const pose = fc.record({
    quaternion: fc.oneof({ weight: 4, arbitrary: fc.array(number, { minLength: 4, maxLength: 4 }) }, { weight: 1, arbitrary: junk }),
    translation: fc.oneof({ weight: 4, arbitrary: fc.array(number, { minLength: 3, maxLength: 3 }) }, { weight: 1, arbitrary: junk }),
  });
  let poses = 0;
  fc.assert(
    fc.property(fc.integer({ min: 0, max: NETWORKS.length - 1 }), landmarks, pose, settings, (s, lm, p, opts) => {
      let out;
      try {
        out = NETWORKS[s].refinePose(lm, p, undefined, opts);
      } catch (e) {
        return oneLine(e);
      }
      poses++;
      checkPose(NETWORKS[s], out);
    }),
    { seed: SEED, numRuns: 100000, interruptAfterTimeLimit: BATCH_LIMIT_MS, markInterruptAsFailure: false },
  );
  assert.ok(poses >= 100, `too few poses: ${poses}`);
});
