// Calls a web page makes, type-checked against pnpjax/js/pnp.d.ts by web/test/types.test.mjs
// (tsc --strict). Each `@ts-expect-error` line is a misuse the declarations must refuse.
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
  type Tracker,
} from './pnp.js';

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
estimatePose(new Float32Array(12), 'seed', { refine: 0 });
estimatePose(pairs, undefined, { cost: 'ml', retry: 20 });

const many: Float64Array = estimatePoses(new Float64Array(12 * 10));
const into: Float32Array = estimatePoses([...pairs.flat(), ...pairs.flat()], null, { out: new Float32Array(14) });
const warm: Pose = refinePose(pairs, pose, undefined, { refine: 1 });
refinePose(pairs, { quaternion: new Float64Array(4), translation: [0, 0, 50] });

const three = toThreeJS(pose, 0.01);
const position: [number, number, number] = three.position;
const c = threeCamera({ unitScale: 0.01 });
const fov: number = c.fov;
if (c.view) console.log(c.view.fullWidth, c.view.offsetX);
threeCamera({ camera: { fx: 500, fy: 500, cx: 320, cy: 240, width: 640, height: 480 } });
threeCamera({ camera: metadata.camera });
threeCamera();

const picked: [number, number][] = selectLandmarks([{ x: 1, y: 2 }, [3, 4]]);
const names: string[] = Object.keys(metadata.layout.points);
const detector = metadata.layout.detector?.name;
const hasTracker: boolean = metadata.tracker;
if (metadata.camera.name === 'pixels') console.log(metadata.camera.width);

const tracker: Tracker = createTracker({ coast: 0.1, iters: 2 });
const frame: Pose | null = tracker.update(pairs, 33.3);
tracker.update(null, 66.7);
tracker.update([], 100, { fx: 500, fy: 500, cx: 320, cy: 240 });
tracker.reset();

// @ts-expect-error: the cost is one of three names
estimatePose(pairs, undefined, { cost: 'l2' });
// @ts-expect-error: a camera is 'seed' or pixel intrinsics
estimatePose(pairs, 'opencv');
// @ts-expect-error: intrinsics need all four numbers
estimatePose(pairs, { fx: 500, fy: 500 });
// @ts-expect-error: landmarks are numbers
estimatePose(['300', '200']);
// @ts-expect-error: a pose's quaternion has four components
const bad: Pose = { quaternion: [0, 0, 1], translation: [0, 0, 1] };
// @ts-expect-error: not a tracker option
createTracker({ speed: 1 });
// @ts-expect-error: update needs the frame's time
tracker.update(pairs);
// @ts-expect-error: threeCamera needs the image size
threeCamera({ camera: { fx: 500, fy: 500, cx: 320, cy: 240 } });
// @ts-expect-error: metadata is read-only data of the module, not a function
metadata();

export const used = [qx, qy, qz, qw, tx, ty, tz, many, into, warm, position, fov, picked, names, detector, hasTracker, frame, bad];
