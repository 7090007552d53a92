// TypeScript declarations of the pnpjax JS module: `pnpjax export --format js` writes them beside
// pnp.js as pnp.d.ts, so an editor completes and checks calls of `import ... from './pnp.js'`.
// Poses are in the OpenCV camera frame (x right, y down, z forward) of a pixel export, or in
// metadata.frame; lengths in the layout's units (metadata.units); quaternions (x, y, z, w), unit,
// w >= 0. estimatePose(s), refinePose, selectLandmarks, createTracker and Tracker.update throw an
// Error with a one-line message on bad input (web/README.md's input rules).

/** Pixel intrinsics of the camera the landmarks come from. */
export interface Intrinsics {
  fx: number;
  fy: number;
  cx: number;
  cy: number;
}

/** undefined or null: the export's camera; 'seed': the original's (normalised coordinates, v up). */
export type Camera = Intrinsics | 'seed' | null | undefined;

/** K [x, y] pairs, or 2K numbers x0, y0, x1, y1, ..., in metadata.layout.points order (typed arrays too). */
export type Landmarks = ArrayLike<number> | ArrayLike<ArrayLike<number>>;

/** What the Levenberg-Marquardt refinement minimises: 2D reprojection, point-to-ray distance
 * (SQPnP's cost) or the likelihood of 3D shape and landmark noise. */
export type Cost = 'image' | 'object' | 'ml';

/** A call's refinement; omitted fields take the export's defaults (pnpjax export --refine ...). */
export interface RefineOptions {
  /** Refinement steps after the network, an integer in [0, 100]; 0: the network alone. */
  refine?: number;
  cost?: Cost;
  /** ml only: up to this many more steps for a fit still gross after `refine`. */
  retry?: number;
}

export interface Pose {
  /** (x, y, z, w), unit, w >= 0. */
  quaternion: [number, number, number, number];
  /** Layout units. */
  translation: [number, number, number];
}

/** A pose to start from, e.g. the previous video frame's (arrays or typed arrays). */
export interface PoseLike {
  quaternion: ArrayLike<number> & Iterable<number>;
  translation: ArrayLike<number> & Iterable<number>;
}

export interface ThreePose {
  /** three.js camera frame (x right, y up, looking down -z), lengths times unitScale. */
  position: [number, number, number];
  /** (x, y, z, w) for THREE.Quaternion.fromArray. */
  quaternion: [number, number, number, number];
}

/** A camera with its image size, for threeCamera. */
export interface PixelCamera extends Intrinsics {
  width: number;
  height: number;
}

export interface ThreeCameraSettings {
  /** Vertical field of view, degrees (THREE.PerspectiveCamera's fov). */
  fov: number;
  aspect: number;
  near: number;
  far: number;
  /** For camera.setViewOffset when the principal point is off the image centre, else null. */
  view: {
    fullWidth: number;
    fullHeight: number;
    offsetX: number;
    offsetY: number;
    width: number;
    height: number;
  } | null;
}

/** pnpjax.track.TrackerConfig's fields in camelCase; defaults: the export's (leave an option out
 * rather than pass undefined: a given option must be a number). */
export interface TrackerOptions {
  iters: number;
  initIters: number;
  noise2d: number;
  sigma3d: number;
  accelRot: number;
  accelTrans: number;
  speedRot: number;
  speedTrans: number;
  velStdRot: number;
  velStdTrans: number;
  robust: number;
  /** Seconds a missed frame's pose is extrapolated for. */
  coast: number;
  /** Seconds without landmarks after which the tracker restarts. */
  gap: number;
}

export interface Tracker {
  /** The frame's pose; landmarks null, undefined or empty for a frame without them (the pose is
   * extrapolated); null before the first frame with landmarks. */
  update(landmarks: Landmarks | null | undefined, timestampMs: number, camera?: Camera): Pose | null;
  /** Forget the past (another video or person). */
  reset(): void;
}

export interface SeedCameraMetadata {
  name: 'seed';
  image: string;
  fx: number;
  fy: number;
  cx: number;
  cy: number;
  fov_y_deg: number;
}

export interface PixelCameraMetadata extends PixelCamera {
  name: 'pixels';
  image: string;
  fov_y_deg: number;
}

export interface Metadata {
  format: string;
  pnpjax_version: string;
  source: { config: string; checkpoint: string };
  layout: {
    name: string;
    units: string;
    up: string;
    facing: string;
    /** Point names to their 3D positions, in layout order. */
    points: Record<string, [number, number, number]>;
    /** The detector whose whole output selectLandmarks takes. */
    detector?: { name: string; num_points: number; indices: number[] };
  };
  camera: SeedCameraMetadata | PixelCameraMetadata;
  frame: string;
  quaternion: string;
  units: string;
  quantization: string;
  /** Whether createTracker is in this module (pnpjax export --tracker). */
  tracker: boolean;
}

/** The export's metadata: layout, camera, frame, units, quantisation, source config. */
export const metadata: Metadata;

/** The pose of the layout from its landmarks: the network, then the refinement. */
export function estimatePose(landmarks: Landmarks, camera?: Camera, options?: RefineOptions): Pose;

/** Many poses: `flat` holds N * K * 2 numbers; returns N * 7 numbers, qx qy qz qw tx ty tz per
 * row, in `options.out` when given (nothing allocated), else in a new Float64Array. */
export function estimatePoses<T extends Float64Array | Float32Array>(
  flat: ArrayLike<number>,
  camera: Camera,
  options: RefineOptions & { out: T },
): T;
export function estimatePoses(flat: ArrayLike<number>, camera?: Camera, options?: RefineOptions & { out?: undefined }): Float64Array;

/** The refinement alone, from a given pose (a warm start). */
export function refinePose(landmarks: Landmarks, pose: PoseLike, camera?: Camera, options?: RefineOptions): Pose;

/** A pose in three.js's camera frame; unitScale converts layout units (0.01: cm to m). */
export function toThreeJS(pose: PoseLike, unitScale?: number): ThreePose;

/** THREE.PerspectiveCamera settings for the export's camera (or `camera`); near and far are 0.1
 * and 1000 layout radii times unitScale. */
export function threeCamera(options?: {
  camera?: PixelCamera | SeedCameraMetadata | PixelCameraMetadata;
  unitScale?: number;
}): ThreeCameraSettings;

/** The layout's K [x, y] pairs from the whole output of the detector metadata.layout.detector
 * names, e.g. face-api.js's `result.landmarks.positions`. */
export function selectLandmarks(points: ArrayLike<ArrayLike<number> | { x: number; y: number }>): [number, number][];

/** pnpjax.track's video tracker, frame by frame; throws unless the module was exported with
 * `pnpjax export --format js --tracker` (metadata.tracker). */
export function createTracker(options?: Partial<TrackerOptions>): Tracker;

/** The module's solver for other export data (the module's own exports are this for its data). */
export function createSolver(generated: unknown): {
  metadata: Metadata;
  estimatePose: typeof estimatePose;
  estimatePoses: typeof estimatePoses;
  refinePose: typeof refinePose;
  toThreeJS: typeof toThreeJS;
  threeCamera: typeof threeCamera;
  selectLandmarks: typeof selectLandmarks;
  createTracker: typeof createTracker;
};
