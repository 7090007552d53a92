// The module's TypeScript declarations (pnpjax/js/pnp.d.ts): a page's calls type-check against
// them under tsc --strict, the misuses in web/test/types/usage.ts are refused, and they declare
// exactly what the module exports.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import * as template from '../../pnpjax/js/pnp.mjs';
import { declarations, keyProblems, typeCheck } from '../tools/dts.mjs';

const DTS = fileURLToPath(new URL('../../pnpjax/js/pnp.d.ts', import.meta.url));
const USAGE = fileURLToPath(new URL('./types/usage.ts', import.meta.url));

test("a page's calls type-check against the declarations, and each misuse is refused", () => {
  // An unneeded @ts-expect-error is itself an error, so every misuse line must fail to check.
  assert.deepEqual(typeCheck([DTS, USAGE]), []);
});

test('the declarations are what the module exports', () => {
  assert.deepEqual(declarations(DTS).exports, Object.keys(template).sort());
});

test('a value that does not match its declaration is reported', () => {
  const d = declarations(DTS);
  const pose = d.props(d.type('Pose'));
  assert.deepEqual(keyProblems({ quaternion: [0, 0, 0, 1], translation: [0, 0, 1] }, pose, 'p'), []);
  assert.deepEqual(keyProblems({ quaternion: [0, 0, 0, 1] }, pose, 'p'), ['p: lacks translation']);
  assert.deepEqual(keyProblems({ quaternion: [], translation: [], extra: 1 }, pose, 'p'), ['p: extra is not declared']);
  assert.deepEqual(keyProblems(null, pose, 'p'), ['p: not an object']);
  const layout = d.props(d.propType(d.type('Metadata'), 'layout'));
  assert.equal(layout.detector.optional, true);
  assert.equal(layout.points.optional, false);
  // Values of another type than declared: a number, a string literal, a boolean.
  const seed = { name: 'seed', image: 'u, v', fx: 1, fy: -1, cx: 0.5, cy: 0.5, fov_y_deg: 53.1 };
  const camera = d.props(d.type('SeedCameraMetadata'));
  assert.deepEqual(keyProblems(seed, camera, 'c'), []);
  assert.deepEqual(keyProblems({ ...seed, name: 'pixels', fx: '1' }, camera, 'c'), [
    'c: name is "pixels", declared literal:seed',
    'c: fx is "1", declared number',
  ]);
  const metadata = d.props(d.type('Metadata'));
  assert.ok(keyProblems({ tracker: 'yes' }, metadata, 'm').includes('m: tracker is "yes", declared boolean'));
});
