// The three.js recipe with the real `three` package: a true pose, turned into a three.js camera
// (threeCamera) and object pose (toThreeJS), lands on its landmarks within 0.01 px, for seed and
// pixel exports, in cm and in metres. Then the same for the pose the module estimates.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as THREE from 'three';

import { createSolver } from '../../pnpjax/js/pnp.mjs';
import { axisAngle, LAYOUT, PIXEL, posed, syntheticData } from './synthetic.mjs';

const TRUE = [...axisAngle([0.3, 1, 0.1], Math.PI * 1.1), 4, -3, 55]; // OpenCV frame
const VIDEO = { width: 640, height: 480 };
const SEED = { name: 'seed', fov_y_deg: 53.1301 };
// Non-square pixels and a centred principal point: the aspect and the offset each matter somewhere.
const CAMERAS = { seed: SEED, pixels: PIXEL, 'pixels (fx != fy, centred)': { ...PIXEL, fx: 610, fy: 540, cx: 320, cy: 240 } };

/** Landmarks of the true pose in the export's image coordinates (seed: u = x/W, v = 1 - y/H, up). */
function landmarks(kind) {
  const c = CAMERAS[kind];
  return posed(TRUE).map(([x, y, z]) => (kind === 'seed' ? [x / z + 0.5, 0.5 - y / z] : [(c.fx * x) / z + c.cx, (c.fy * y) / z + c.cy]));
}

/** The pixel (on the video) where each landmark is: what the user's detector reported. */
function videoPixels(kind) {
  return landmarks(kind).map(([u, v]) => (kind === 'seed' ? [u * VIDEO.width, (1 - v) * VIDEO.height] : [u, v]));
}

/** The recipe of web/README.md: project the layout, posed by `pose`, through the three.js camera. */
function recipePixels(solver, pose, unitScale) {
  const c = solver.threeCamera({ unitScale });
  const camera = new THREE.PerspectiveCamera(c.fov, c.aspect, c.near, c.far);
  if (c.view) camera.setViewOffset(c.view.fullWidth, c.view.fullHeight, c.view.offsetX, c.view.offsetY, c.view.width, c.view.height);
  camera.aspect = c.aspect; // after setViewOffset, which sets aspect = fullWidth / fullHeight
  camera.updateProjectionMatrix();
  const head = new THREE.Group();
  camera.add(head);
  const { position, quaternion } = solver.toThreeJS(pose, unitScale);
  head.position.fromArray(position);
  head.quaternion.fromArray(quaternion);
  camera.updateMatrixWorld(true);
  return Object.values(LAYOUT).map((p) => {
    const v = head.localToWorld(new THREE.Vector3(...p.map(Math.fround)).multiplyScalar(unitScale)).project(camera);
    assert.ok(v.z > -1 && v.z < 1, `clipped: ndc z ${v.z}`);
    return [((v.x + 1) / 2) * VIDEO.width, ((1 - v.y) / 2) * VIDEO.height];
  });
}

function truePose(kind) {
  const [x, y, z, w, tx, ty, tz] = TRUE;
  // The export frame: OpenGL for seed exports (a 180-degree turn about x), OpenCV for pixel ones.
  if (kind === 'seed') return { quaternion: [w, -z, y, -x], translation: [tx, -ty, -tz] };
  return { quaternion: [x, y, z, w], translation: [tx, ty, tz] };
}

for (const kind of Object.keys(CAMERAS)) {
  for (const unitScale of [1, 0.01]) {
    test(`three.js: ${kind} export, unitScale ${unitScale}: the true pose lands on its landmarks within 0.01 px`, () => {
      const solver = createSolver(syntheticData(TRUE, { camera: CAMERAS[kind] }));
      const want = videoPixels(kind);
      const got = recipePixels(solver, truePose(kind), unitScale);
      got.forEach((p, k) =>
        assert.ok(Math.hypot(p[0] - want[k][0], p[1] - want[k][1]) < 0.01, `${kind} ${unitScale} point ${k}: ${p} vs ${want[k]}`),
      );
      // The estimated pose (noise-free landmarks, image cost) lands there too.
      const estimate = solver.estimatePose(landmarks(kind), undefined, { refine: 20, cost: 'image' });
      recipePixels(solver, estimate, unitScale).forEach((p, k) => assert.ok(Math.hypot(p[0] - want[k][0], p[1] - want[k][1]) < 0.01));
    });
  }
}

test('three.js: a seed export assumes focal = one image side on each axis (aspect 1)', () => {
  const c = createSolver(syntheticData(TRUE, { camera: SEED })).threeCamera();
  assert.equal(c.aspect, 1);
  assert.ok(Math.abs(c.fov - 53.1301) < 1e-4);
  const p = createSolver(syntheticData(TRUE)).threeCamera();
  assert.ok(Math.abs(p.aspect - 640 / 480) < 1e-12 && p.view !== null);
});
