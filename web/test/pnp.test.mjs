// Unit tests of the JS module's source (pnpjax/js/pnp.mjs) in Node: `node --test web/test/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as template from '../../pnpjax/js/pnp.mjs';
import { axisAngle, angleDeg, posed, project, rng, syntheticData } from './synthetic.mjs';

const { createSolver } = template;
const TRUE = [...axisAngle([0.3, 1, 0.1], Math.PI * 1.05), 2, -3, 60]; // a face looking at the camera, 60 cm away

function perturbed(pose, deg, dt) {
  const d = axisAngle([1, -0.5, 0.2], (deg * Math.PI) / 180);
  const [x, y, z, w] = pose;
  const [a, b, c, e] = d;
  const q = [e * x + a * w + b * z - c * y, e * y - a * z + b * w + c * x, e * z + a * y - b * x + c * w, e * w - a * x - b * y - c * z];
  return [...q, pose[4] + dt, pose[5] - dt, pose[6] + 3 * dt];
}

test('the template source throws until exported', () => {
  assert.equal(template.metadata, undefined);
  assert.throws(() => template.estimatePose([]), /template source/);
});

test('refinement recovers the exact pose from noise-free landmarks (image and object costs)', () => {
  const solver = createSolver(syntheticData(perturbed(TRUE, 8, 2)));
  const landmarks = project(TRUE);
  for (const cost of ['image', 'object']) {
    const pose = solver.estimatePose(landmarks, undefined, { refine: 20, cost });
    assert.ok(angleDeg(pose.quaternion, TRUE) < 1e-6, `${cost}: ${angleDeg(pose.quaternion, TRUE)}`);
    pose.translation.forEach((v, i) => assert.ok(Math.abs(v - TRUE[4 + i]) < 1e-6, `${cost} t${i}`));
    assert.ok(pose.quaternion[3] >= 0);
  }
  // The ml likelihood's optimum is O(sigma_3d^2) off an exact pose: close, not exact.
  const ml = solver.estimatePose(landmarks, undefined, { refine: 20 });
  assert.ok(angleDeg(ml.quaternion, TRUE) < 0.5);
  const net = solver.estimatePose(landmarks, undefined, { refine: 0 });
  assert.ok(angleDeg(net.quaternion, TRUE) > 7);
});

test('retry: a gross ml fit gets more steps and converges; a good one is untouched', () => {
  const landmarks = project(TRUE);
  const far = createSolver(syntheticData(perturbed(TRUE, 40, 0)));
  const short = far.estimatePose(landmarks, undefined, { refine: 2, retry: 0 });
  const long = far.estimatePose(landmarks, undefined, { refine: 2, retry: 30 });
  assert.ok(angleDeg(short.quaternion, TRUE) > 10, `${angleDeg(short.quaternion, TRUE)}`);
  assert.ok(angleDeg(long.quaternion, TRUE) < 1, `${angleDeg(long.quaternion, TRUE)}`);
  const near = createSolver(syntheticData(perturbed(TRUE, 2, 0.5)));
  assert.deepEqual(
    near.estimatePose(landmarks, undefined, { refine: 2, retry: 30 }),
    near.estimatePose(landmarks, undefined, { refine: 2, retry: 0 }),
  );
  assert.throws(() => near.estimatePose(landmarks, undefined, { retry: -1 }), /retry must be an integer/);
});

test('refinement lowers the image error and never leaves the front of the camera', () => {
  const random = rng(7);
  for (let i = 0; i < 200; i++) {
    // Starts anywhere, some behind the camera; noisy landmarks.
    const start = [
      random() - 0.5,
      random() - 0.5,
      random() - 0.5,
      random() - 0.5,
      40 * (random() - 0.5),
      40 * (random() - 0.5),
      100 * (random() - 0.7),
    ];
    const solver = createSolver(syntheticData(start));
    const landmarks = project(TRUE).map(([u, v]) => [u + 4 * (random() - 0.5), v + 4 * (random() - 0.5)]);
    for (const cost of ['image', 'object', 'ml']) {
      for (const refine of [0, 1, 5]) {
        const p = solver.estimatePose(landmarks, undefined, { refine, cost });
        const q = p.quaternion;
        assert.ok(Math.abs(Math.hypot(...q) - 1) < 1e-12 && q[3] >= 0);
        const depths = posed([...q, ...p.translation]).map((x) => x[2]);
        assert.ok(Math.min(...depths) > 1e-3, `${cost} ${refine}: depth ${Math.min(...depths)}`);
      }
    }
  }
});

test('batch equals single calls, and a warm start refines from the given pose', () => {
  const solver = createSolver(syntheticData(perturbed(TRUE, 5, 1)));
  const random = rng(3);
  const rows = Array.from({ length: 20 }, () => project(perturbed(TRUE, 20 * random(), 3 * random())));
  const flat = new Float64Array(rows.flat(2));
  const out = solver.estimatePoses(flat);
  assert.equal(out.length, 20 * 7);
  rows.forEach((lm, r) => {
    const p = solver.estimatePose(lm);
    assert.deepEqual([...out.subarray(7 * r, 7 * r + 7)], [...p.quaternion, ...p.translation]);
  });
  const reused = new Float64Array(140);
  assert.equal(solver.estimatePoses(flat, undefined, { out: reused }), reused);
  assert.deepEqual([...reused], [...out]);
  const truth = { quaternion: TRUE.slice(0, 4), translation: TRUE.slice(4) };
  const warm = solver.refinePose(project(TRUE), truth, undefined, { cost: 'image' });
  assert.ok(angleDeg(warm.quaternion, TRUE) < 1e-9);
});

test('bad inputs throw one-line Errors naming the field', () => {
  const solver = createSolver(syntheticData(TRUE));
  const lm = project(TRUE);
  const cases = [
    [() => solver.estimatePose(lm.slice(1)), /landmarks must be 6 \[x, y\] pairs or 12 numbers, got 5/],
    [() => solver.estimatePose(lm, { fx: -500, fy: 500, cx: 0, cy: 0 }), /camera must be/],
    [
      () => solver.estimatePose(lm, { fx: 5e-324, fy: 5e-324, cx: 0, cy: 0 }),
      /landmark 0 x is Infinity focal lengths off the optical axis/,
    ],
    [() => solver.estimatePose(lm, { fx: 1e-300, fy: 1e-300, cx: 0, cy: 0 }), /landmark 0 x is .* focal lengths off the optical axis/],
    [() => solver.estimatePose([...lm.slice(0, 5), [1e300, 0]]), /landmark 5 x is 1e\+300, outside/],
    [() => solver.estimatePose([...lm.slice(0, 5), [1e6, 0]]), /landmark 5 x is .* off the optical axis/],
    [() => solver.estimatePose([...lm.slice(0, 5), [-1.7e308, 0]]), /landmark 5 x/],
    [() => solver.estimatePose(lm, undefined, { refine: -1 }), /refine must be an integer/],
    [() => solver.estimatePose(lm, undefined, { cost: 'l2\n' }), /cost must be one of/],
    [() => solver.estimatePoses(new Float64Array(13)), /flat array of N\*12 numbers/],
    [() => solver.estimatePoses(new Float64Array([...lm.flat(), ...lm.flat(0).slice(0, 5).flat(), NaN, 1])), /row 1 landmark 5 x is NaN/],
    [() => solver.refinePose(lm, { quaternion: [0, 0, 0], translation: [0, 0, 1] }), /pose must be/],
  ];
  for (const [call, message] of cases) {
    assert.throws(call, (e) => e instanceof Error && message.test(e.message) && !/\n/.test(e.message), String(message));
  }
});
