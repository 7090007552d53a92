// Unit tests of the JS module's tracker (createTracker, pnpjax/js/pnp.mjs) in Node. Its equality
// with pnpjax.track (float64 JAX) on recorded sequences is tested from Python (tests/test_track.py).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createSolver } from '../../pnpjax/js/pnp.mjs';
import { TRACK, angleDeg, axisAngle, project, syntheticData } from './synthetic.mjs';

const TRUE = [...axisAngle([0.3, 1, 0.1], Math.PI * 1.05), 2, -3, 60];
// A "network" 8 degrees and a few cm off the truth, whatever the landmarks.
const START = [...axisAngle([0.31, 1, 0.12], Math.PI * 1.05 + 0.14), 4, -1, 63];

function tracker(options) {
  return createSolver({ ...syntheticData(START), track: TRACK }).createTracker(options);
}

/** The true pose turned about the camera's y axis by `deg` degrees (left-multiplied). */
function turned(deg) {
  const [a, b, c, d] = axisAngle([0, 1, 0], (deg * Math.PI) / 180);
  const [x, y, z, w] = TRUE;
  return [
    d * x + a * w + b * z - c * y,
    d * y - a * z + b * w + c * x,
    d * z + a * y - b * x + c * w,
    d * w - a * x - b * y - c * z,
    ...TRUE.slice(4),
  ];
}

test('a still head: from an 8 degree start to the exact pose; no pose before the first landmarks', () => {
  const tr = tracker();
  assert.equal(tr.update(null, 0), null);
  let pose;
  for (let i = 1; i <= 10; i++) pose = tr.update(project(TRUE), 33 * i);
  assert.ok(angleDeg(pose.quaternion, TRUE) < 1e-3, `${angleDeg(pose.quaternion, TRUE)}`);
  pose.translation.forEach((v, i) => assert.ok(Math.abs(v - TRUE[4 + i]) < 1e-2));
  assert.ok(pose.quaternion[3] >= 0);
});

test('a turning head: missed frames are extrapolated (for at most `coast` s); reset forgets', () => {
  const tr = tracker();
  const speed = 60; // deg/s about the camera's y axis
  for (let i = 0; i < 60; i++) tr.update(project(turned((speed * i) / 30)), (1000 * i) / 30);
  const missed = tr.update([], 2000); // frame 60, no landmarks
  assert.ok(angleDeg(missed.quaternion, turned(speed * 2)) < 0.5, `${angleDeg(missed.quaternion, turned(speed * 2))}`);
  const late = tr.update(null, 3000); // 1 s later: only `coast` (0.2 s) of extrapolation
  assert.ok(angleDeg(late.quaternion, turned(speed * (59 / 30 + 0.2))) < 1);
  tr.reset();
  assert.equal(tr.update(null, 3100), null);
});

test('an outlier landmark barely moves the tracked pose', () => {
  const tr = tracker();
  for (let i = 0; i < 30; i++) tr.update(project(TRUE), 33 * i);
  const lm = project(TRUE);
  lm[2] = [lm[2][0] + 40, lm[2][1] - 30]; // the nose tip jumps by 50 px
  const pose = tr.update(lm, 33 * 30);
  assert.ok(angleDeg(pose.quaternion, TRUE) < 0.5, `${angleDeg(pose.quaternion, TRUE)}`);
});

test('bad options and inputs throw one-line errors', () => {
  for (const options of [{ iters: 0 }, { iters: 1.5 }, { iters: 1e6 }, { gap: -1 }, { coast: NaN }, { bogus: 1 }, { robust: '3' }]) {
    assert.throws(() => tracker(options), /^Error: pnpjax createTracker: bad option/);
  }
  const tr = tracker({ iters: 2 });
  assert.throws(() => tr.update(project(TRUE), NaN), /pnpjax tracker.update: bad timestampMs/);
  assert.throws(() => tr.update([[1, 2]], 0), /pnpjax tracker.update: landmarks must be/);
});
