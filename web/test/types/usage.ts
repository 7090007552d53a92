// Calls a web page makes, type-checked against pnpjax/js/pnp.d.ts by web/test/types.test.mjs
// (tsc --strict) and run against a real export, blazeface6 with the tracker and a pixel camera, by
// tests/test_jsmodule.py (node web/tools/dts.mjs --usage). Each `@ts-expect-error` line is a
// misuse the declarations must refuse; the module must refuse it too (it throws).
import {
  createTracker,
  estimatePose,
  estimatePoses,
  metadata,
  refinePose,
  selectLandmarks,
  threeCamera,
  toThreeJS,
  type Pose,
  type RefineOptions,
  type Tracker,
} from './pnp.js';

function mustThrow(f: () => unknown): void {
  let threw = false;
  try {
    f();
  } catch {
    threw = true;
  }
  if (!threw) throw new Error(`the module took a call its declarations refuse: ${f}`);
}

const pairs: [number, number][] = [
  [300, 200],
  [340, 200],
  [320, 230],
  [320, 260],
  [280, 210],
  [360, 210],
];
const pose: Pose = estimatePose(pairs);
const [qx, qy, qz, qw] = pose.quaternion;
const [tx, ty, tz]: number[] = pose.translation;
estimatePose(pairs.flat(), { fx: 500, fy: 500, cx: 320, cy: 240 }, { refine: 2, cost: 'object' });
estimatePose(new Float32Array(pairs.flat()), 'seed', { refine: 0 });
estimatePose(pairs, undefined, { cost: 'ml', retry: 20 });

const many: Float64Array = estimatePoses(new Float64Array(12 * 10).fill(300));
const into: Float32Array = estimatePoses([...pairs.flat(), ...pairs.flat()], null, { out: new Float32Array(14) });
const again: Float64Array = estimatePoses(pairs.flat(), undefined, { refine: 0 });
const warm: Pose = refinePose(pairs, pose, undefined, { refine: 1 });
refinePose(pairs, { quaternion: new Float64Array([0, 0, 0, 1]), translation: [0, 0, 50] });

const three = toThreeJS(pose, 0.01);
const position: [number, number, number] = three.position;
const c = threeCamera({ unitScale: 0.01 });
const fov: number = c.fov;
if (c.view) console.log(c.view.fullWidth, c.view.offsetX);
threeCamera({ camera: { fx: 500, fy: 500, cx: 320, cy: 240, width: 640, height: 480 } });
threeCamera({ camera: metadata.camera });
threeCamera();

const picked: [number, number][] = selectLandmarks([{ x: 1, y: 2 }, [3, 4], [5, 6], { x: 7, y: 8 }, [9, 10], [11, 12]]);
const names: string[] = Object.keys(metadata.layout.points);
const detector = metadata.layout.detector?.name;
const hasTracker: boolean = metadata.tracker;
const width = metadata.camera.name === 'pixels' ? metadata.camera.width : 1;

const tracker: Tracker = createTracker({ coast: 0.1, iters: 2 });
const frame: Pose | null = tracker.update(pairs, 33.3);
tracker.update(null, 66.7);
tracker.update([], 100, { fx: 500, fy: 500, cx: 320, cy: 240 });
tracker.reset();

// @ts-expect-error: the cost is one of three names
mustThrow(() => estimatePose(pairs, undefined, { cost: 'l2' }));
// @ts-expect-error: a camera is 'seed' or pixel intrinsics
mustThrow(() => estimatePose(pairs, 'opencv'));
// @ts-expect-error: intrinsics need all four numbers
mustThrow(() => estimatePose(pairs, { fx: 500, fy: 500 }));
// @ts-expect-error: landmarks are numbers
mustThrow(() => estimatePose(['300', '200', '340', '200', '320', '230', '320', '260', '280', '210', '360', '210']));
// @ts-expect-error: not a tracker option
mustThrow(() => createTracker({ speed: 1 }));
// @ts-expect-error: update needs the frame's time
mustThrow(() => tracker.update(pairs));
// @ts-expect-error: threeCamera needs the image size
mustThrow(() => threeCamera({ camera: { fx: 500, fy: 500, cx: 320, cy: 240 } }));
// @ts-expect-error: metadata is the module's data, not a function
mustThrow(() => metadata());
// @ts-expect-error: not a refinement option (the module ignores unknown options: types only)
const options: RefineOptions = { iterations: 3 };
// @ts-expect-error: a pose's quaternion has four components
const bad: Pose = { quaternion: [0, 0, 1], translation: [0, 0, 1] };
// @ts-expect-error: without `out` the poses are a Float64Array
const wrong: Float32Array = estimatePoses(pairs.flat());

export const used = [qx, qy, qz, qw, tx, ty, tz, many, into, again, warm, position, fov, picked, names, detector, hasTracker, width];
export const typeOnly = [frame, options, bad, wrong];
