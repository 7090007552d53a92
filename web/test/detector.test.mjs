// selectLandmarks: the layout's points from its detector's whole output (metadata.layout.detector).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as template from '../../pnpjax/js/pnp.mjs';
import { syntheticData } from './synthetic.mjs';

const FACEAPI10 = { name: 'face-api.js/68', num_points: 68, indices: [30, 33, 31, 35, 36, 39, 45, 42, 48, 54] };

function solverWith(detector) {
  const g = syntheticData([1, 0, 0, 0, 0, 0, 60]);
  // The synthetic layout has 6 points: give it a 6-index detector over 68 points.
  g.metadata.layout.detector = detector;
  return template.createSolver(g);
}

test('selectLandmarks picks the detector indices, in layout order, from pairs and {x, y} objects', () => {
  const detector = { ...FACEAPI10, indices: FACEAPI10.indices.slice(4, 10) };
  const solver = solverWith(detector);
  const pairs = Array.from({ length: 68 }, (_, i) => [i + 0.25, -i]);
  const want = detector.indices.map((i) => [i + 0.25, -i]);
  assert.deepEqual(solver.selectLandmarks(pairs), want);
  assert.deepEqual(solver.selectLandmarks(pairs.map(([x, y]) => ({ x, y, _x: 0 }))), want);
  assert.deepEqual(solver.selectLandmarks(pairs.map((p) => Float64Array.from(p))), want);
  // Its output is what estimatePose takes.
  const pose = solver.estimatePose(solver.selectLandmarks(pairs.map(([x, y]) => [300 + x, 200 + y])), undefined, { refine: 0 });
  assert.equal(pose.quaternion.length, 4);
});

test('selectLandmarks refuses what is not the detector output', () => {
  const solver = solverWith({ ...FACEAPI10, indices: FACEAPI10.indices.slice(0, 6) });
  const good = Array.from({ length: 68 }, () => [1, 2]);
  assert.throws(() => solver.selectLandmarks(good.slice(0, 10)), /gives 68 points, got 10/);
  assert.throws(() => solver.selectLandmarks(null), /gives 68 points/);
  assert.throws(() => solver.selectLandmarks('x'.repeat(68)), /gives 68 points/);
  for (const bad of [[1], { x: 1 }, { x: NaN, y: 1 }, ['1', 2], null]) {
    const pts = good.slice();
    pts[33] = bad;
    assert.throws(() => solver.selectLandmarks(pts), /point 33 is not/);
  }
  assert.throws(() => solverWith(undefined).selectLandmarks(good), /does not name its detector/);
  assert.throws(() => template.selectLandmarks(good), /template source/);
});
