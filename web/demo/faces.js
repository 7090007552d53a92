// pnpjax on real faces: face-api.js (served from web/node_modules, no network) finds faces and their
// 68 landmarks; the layout's points are selected by the indices its metadata names
// (metadata.layout.detector); the exported JS module turns them into a head pose for a camera made
// from the image size and a field of view; three.js places a head-fixed overlay (axes, a box around
// the head, glasses) that is projected and drawn over the video or photo.
//
// Query parameters (all optional):
//   js=URL          a `pnpjax export --format js` module of a face-api.js layout (default /models/faceapi10/pnp.js)
//   mode=camera|photo   start the camera (default) or run on photo=URL (default: face-api's demo/sample1.jpg)
//   fov=DEG         horizontal field of view of the camera (default 60)
//   backend=wasm|cpu    TF.js backend of face-api.js (default wasm, falls back to cpu)
//   landmarks=full|tiny face_landmark_68 or its tiny version (default full)
//   size=N          input size of the tiny face detector, a multiple of 32 (default 320 for the camera, 608 for photos)
//   refine=N        passed to estimatePose as {refine: N} (modules with refinement; default: the module's own)
//   track=1         smooth with the module's createTracker, when it has one (metadata.tracker: `pnpjax export --tracker`)
//   framecode=1     read a frame number from the video's top-left corner (the test's fake webcam)
//   frames=N        with framecode: set <body data-done> once N distinct frames have been processed
// window.pnpjaxFaces holds everything measured (the headless test reads it); <body data-ready> is
// set once the models are loaded and the first frame or photo is processed.

import * as THREE from '/node_modules/three/build/three.core.js';

const FACEAPI = '/node_modules/@vladmandic/face-api/dist/face-api.esm.js';
const MODELS = '/node_modules/@vladmandic/face-api/model';
const WASM_DIR = '/node_modules/@tensorflow/tfjs-backend-wasm/dist/';
export const FACE_API_68 = 'face-api.js/68';

const params = new URLSearchParams(location.search);
const opt = {
  js: params.get('js') ?? '/models/faceapi10/pnp.js',
  mode: params.get('mode') ?? 'camera',
  photo: params.get('photo') ?? '/node_modules/@vladmandic/face-api/demo/sample1.jpg',
  backend: params.get('backend') ?? 'wasm',
  landmarks: params.get('landmarks') ?? 'full',
  size: Number(params.get('size') ?? (params.get('mode') === 'photo' ? 608 : 320)),
  refine: params.has('refine') ? Number(params.get('refine')) : undefined,
  framecode: params.get('framecode') === '1',
  frames: Number(params.get('frames') ?? 0),
};
const $ = (id) => document.getElementById(id);
/** A URL from the query, only on this page's own server: a link must not make the page run or show another site's files. */
function sameOrigin(url, what) {
  const u = new URL(url, location.href);
  if (u.origin !== location.origin) throw new Error(`${what} must be on this server, got ${u.origin}`);
  return u.href;
}
if (params.has('fov')) $('fov').value = params.get('fov');
if (params.get('track') === '1') $('track').checked = true;

// --- camera and frames --------------------------------------------------------------------------

/** Pinhole camera of a width x height image with a horizontal field of view (principal point at the centre). */
function cameraOf(width, height, hfovDeg) {
  const f = width / 2 / Math.tan((hfovDeg * Math.PI) / 360);
  return { fx: f, fy: f, cx: width / 2, cy: height / 2, width, height };
}

// OpenCV <-> OpenGL camera frames: 180 degrees about x, applied on the left.
const flip = ({ quaternion: [x, y, z, w], translation: [tx, ty, tz] }) => {
  const q = [w, -z, y, -x];
  return { quaternion: q[3] < 0 ? q.map((v) => -v) : q, translation: [tx, -ty, -tz] };
};

/** A pose in the export's frame -> the OpenCV camera frame. */
const toOpenCV = (solver, pose) => (solver.metadata.frame.startsWith('OpenGL') ? flip(pose) : pose);

// --- the head-fixed overlay (layout frame: cm, x right, y up, z out of the face) ----------------

function overlayGeometry() {
  const seg = [];
  const line = (a, b, color) => seg.push([a, b, color]);
  // Axes from the nose tip (the layout's origin).
  line([0, 0, 0], [8, 0, 0], '#f33');
  line([0, 0, 0], [0, 8, 0], '#3c3');
  line([0, 0, 0], [0, 0, 8], '#48f');
  // A box around the head.
  const [x0, x1, y0, y1, z0, z1] = [-9, 9, -13, 11, -20, 2];
  const c = [
    [x0, y0, z0],
    [x1, y0, z0],
    [x1, y1, z0],
    [x0, y1, z0],
    [x0, y0, z1],
    [x1, y0, z1],
    [x1, y1, z1],
    [x0, y1, z1],
  ];
  [
    [0, 1],
    [1, 2],
    [2, 3],
    [3, 0],
    [4, 5],
    [5, 6],
    [6, 7],
    [7, 4],
    [0, 4],
    [1, 5],
    [2, 6],
    [3, 7],
  ].forEach(([a, b]) => line(c[a], c[b], '#0dd'));
  // Glasses: two lenses in front of the eyes, a bridge, arms back to the ears.
  const lens = (cx) => {
    const p = [
      [cx - 2.6, 4.9],
      [cx + 2.6, 4.9],
      [cx + 2.3, 1.6],
      [cx - 2.3, 1.6],
    ].map(([x, y]) => [x, y, -1.8]);
    p.forEach((a, i) => line(a, p[(i + 1) % 4], '#fd0'));
  };
  lens(-3.3);
  lens(3.3);
  line([-0.7, 4.2, -1.8], [0.7, 4.2, -1.8], '#fd0');
  line([-5.9, 4.6, -1.8], [-7.6, 3.6, -11.5], '#fd0');
  line([5.9, 4.6, -1.8], [7.6, 3.6, -11.5], '#fd0');
  return seg;
}
const SEGMENTS = overlayGeometry();

/** Draw the overlay for a pose through the three.js camera of the image's intrinsics (the module's threeCamera). */
function drawOverlay(ctx, solver, pose, cam, scale) {
  const c = solver.threeCamera({ camera: cam });
  const camera = new THREE.PerspectiveCamera(c.fov, c.aspect, c.near, c.far);
  if (c.view) camera.setViewOffset(c.view.fullWidth, c.view.fullHeight, c.view.offsetX, c.view.offsetY, c.view.width, c.view.height);
  const head = new THREE.Object3D();
  const three = solver.toThreeJS(pose); // pose in the export's frame -> three.js camera frame, cm
  head.position.fromArray(three.position);
  head.quaternion.fromArray(three.quaternion);
  head.updateMatrixWorld(true);
  camera.updateMatrixWorld(true);
  const toPixels = (p) => {
    const v = new THREE.Vector3(...p).applyMatrix4(head.matrixWorld);
    if (v.z > -1) return null; // behind the camera
    v.project(camera);
    return [((v.x + 1) / 2) * cam.width * scale, ((1 - v.y) / 2) * cam.height * scale];
  };
  ctx.save();
  ctx.lineWidth = 2.5;
  for (const [a, b, color] of SEGMENTS) {
    const [pa, pb] = [toPixels(a), toPixels(b)];
    if (!pa || !pb) continue;
    ctx.strokeStyle = color;
    ctx.beginPath();
    ctx.moveTo(...pa);
    ctx.lineTo(...pb);
    ctx.stroke();
  }
  ctx.restore();
}

function drawLandmarks(ctx, all, selected, scale) {
  ctx.save();
  ctx.fillStyle = 'rgba(255,255,255,0.8)';
  for (const [x, y] of all) ctx.fillRect(x * scale - 1, y * scale - 1, 2, 2);
  ctx.fillStyle = '#f80';
  for (const [x, y] of selected) {
    ctx.beginPath();
    ctx.arc(x * scale, y * scale, 3.5, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.restore();
}

// --- the pipeline ---------------------------------------------------------------------------------

const state = { faceapi: null, solver: null, tracker: null, options: null };
const record = { config: null, frames: [], photo: null, shots: {}, errors: [] };
window.pnpjaxFaces = record;

async function load() {
  const faceapi = await import(FACEAPI);
  faceapi.tf.setWasmPaths(WASM_DIR);
  let backend = opt.backend;
  try {
    if (!(await faceapi.tf.setBackend(backend))) throw new Error('not available');
  } catch (e) {
    record.errors.push(`backend ${backend}: ${e.message}; using cpu`);
    backend = 'cpu';
    await faceapi.tf.setBackend('cpu');
  }
  await faceapi.tf.ready();
  await faceapi.nets.tinyFaceDetector.loadFromUri(MODELS);
  await (opt.landmarks === 'tiny' ? faceapi.nets.faceLandmark68TinyNet : faceapi.nets.faceLandmark68Net).loadFromUri(MODELS);
  const solver = await import(sameOrigin(opt.js, 'js'));
  if (solver.metadata.layout.detector?.name !== FACE_API_68 || typeof solver.selectLandmarks !== 'function') {
    throw new Error(`the module's layout ${solver.metadata.layout.name} does not take face-api.js's 68 landmarks`);
  }
  Object.assign(state, {
    faceapi,
    solver,
    options: new faceapi.TinyFaceDetectorOptions({ inputSize: opt.size, scoreThreshold: 0.4 }),
  });
  record.config = {
    backend: faceapi.tf.getBackend(),
    faceapi: faceapi.version,
    landmarks: opt.landmarks,
    size: opt.size,
    layout: solver.metadata.layout.name,
    source: solver.metadata.source,
    refine: opt.refine ?? "the module's default",
    tracker: solver.metadata.tracker === true,
  };
  $('status').textContent =
    `face-api.js ${faceapi.version} (${record.config.backend}, tiny face detector ${opt.size} + ` +
    `${opt.landmarks} 68-point landmarks) → ${solver.metadata.layout.name} (${solver.metadata.source.config})`;
}

/** Detect, select, solve: one entry per face, largest first. `image` is a canvas, image or video. */
async function solveFaces(image, cam) {
  const { faceapi, solver, options } = state;
  const t0 = performance.now();
  const tiny = opt.landmarks === 'tiny';
  const found = await faceapi.detectAllFaces(image, options).withFaceLandmarks(tiny);
  const t1 = performance.now();
  const faces = found
    .map((r) => {
      const landmarks = r.landmarks.positions.map((p) => [p.x, p.y]);
      const points = solver.selectLandmarks(landmarks);
      const pose = opt.refine === undefined ? solver.estimatePose(points, cam) : solver.estimatePose(points, cam, { refine: opt.refine });
      const opencv = toOpenCV(solver, pose);
      const b = r.detection.box;
      return { score: r.detection.score, box: [b.x, b.y, b.width, b.height], landmarks, points, pose, opencv };
    })
    .sort((a, b) => b.box[2] * b.box[3] - a.box[2] * a.box[3]);
  return { faces, ms: { detect: t1 - t0, solve: performance.now() - t1 } };
}

function show(out) {
  $('pose').textContent = JSON.stringify(out, (k, v) => (typeof v === 'number' ? Math.round(v * 1000) / 1000 : v), 1);
}

// --- photo mode -------------------------------------------------------------------------------------

async function runPhoto() {
  const img = new Image();
  img.src = sameOrigin(opt.photo, 'photo');
  await img.decode();
  const cam = cameraOf(img.naturalWidth, img.naturalHeight, Number($('fov').value));
  const view = $('view');
  const scale = Math.min(1, 960 / img.naturalWidth);
  view.width = Math.round(img.naturalWidth * scale);
  view.height = Math.round(img.naturalHeight * scale);
  const { faces, ms } = await solveFaces(img, cam);
  const ctx = view.getContext('2d');
  ctx.drawImage(img, 0, 0, view.width, view.height);
  for (const f of faces) {
    drawLandmarks(ctx, f.landmarks, f.points, scale);
    drawOverlay(ctx, state.solver, f.pose, cam, scale);
  }
  record.photo = { url: opt.photo, camera: cam, faces, ms };
  record.shots.photo = view.toDataURL('image/jpeg', 0.85);
  show({ photo: opt.photo, camera: cam, ms, faces: faces.map((f) => ({ score: f.score, ...f.opencv })) });
}

// --- camera mode ------------------------------------------------------------------------------------

/** The frame number drawn by the test's fake webcam: 8 squares of 16 px at (8, 8): white, black, 6 bits. */
function readFrameCode(ctx) {
  const W = 8 + 8 * 20;
  const px = ctx.getImageData(0, 0, W, 32).data;
  const lum = (i) => {
    const o = (16 * W + 16 + 20 * i) * 4; // centre of square i: x = 8 + 20 i + 8, y = 8 + 8
    return px[o] + px[o + 1] + px[o + 2];
  };
  const [white, black] = [lum(0), lum(1)];
  if (white - black < 300) return null;
  let code = 0;
  for (let b = 0; b < 6; b++) code = code * 2 + (lum(2 + b) > (white + black) / 2 ? 1 : 0);
  return code;
}

async function runCamera() {
  const video = $('video');
  video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  await video.play();
  const [w, h] = [video.videoWidth, video.videoHeight];
  const view = $('view');
  [view.width, view.height] = [w, h];
  const frame = Object.assign(document.createElement('canvas'), { width: w, height: h });
  const fctx = frame.getContext('2d', { willReadFrequently: true });
  const ctx = view.getContext('2d');
  const seen = new Set();
  const t0 = performance.now();
  state.tracker = state.solver.metadata.tracker === true ? state.solver.createTracker() : null;
  let lastBox = null;
  for (;;) {
    await new Promise((r) =>
      video.requestVideoFrameCallback ? video.requestVideoFrameCallback(() => r()) : requestAnimationFrame(() => r()),
    );
    const tStart = performance.now();
    fctx.drawImage(video, 0, 0, w, h);
    const code = opt.framecode ? readFrameCode(fctx) : null;
    if (opt.framecode && (code === null || seen.has(code))) continue;
    const cam = cameraOf(w, h, Number($('fov').value));
    const { faces, ms } = await solveFaces(frame, cam);
    const face = faces[0] ?? null;
    let shown = face?.pose ?? null;
    let tracked = null;
    if (state.tracker && $('track').checked) {
      // The tracker smooths over time; a frame without a face is extrapolated (or null at first).
      // A face whose box jumps by more than its size is another face (or a cut): start afresh.
      if (
        face &&
        lastBox &&
        Math.hypot(...[0, 1].map((i) => face.box[i] + face.box[i + 2] / 2 - lastBox[i] - lastBox[i + 2] / 2)) >
          Math.max(lastBox[2], lastBox[3])
      ) {
        state.tracker.reset();
      }
      if (face) lastBox = face.box;
      tracked = state.tracker.update(face ? face.points : null, tStart, cam);
      shown = tracked;
    }
    ctx.drawImage(frame, 0, 0);
    if (face) drawLandmarks(ctx, face.landmarks, face.points, 1);
    if (shown) drawOverlay(ctx, state.solver, shown, cam, 1);
    ms.total = performance.now() - tStart;
    const entry = {
      code,
      t: tStart - t0,
      camera: cam,
      ms,
      face: face && { score: face.score, box: face.box, landmarks: face.landmarks, points: face.points, pose: face.opencv },
      tracked: tracked && toOpenCV(state.solver, tracked),
    };
    record.frames.push(entry);
    if (opt.framecode) {
      seen.add(code);
      record.shots[code] = view.toDataURL('image/jpeg', 0.85);
    }
    show({ frame: code, camera: { ...cam }, ms, pose: face?.opencv ?? null });
    if (!('ready' in document.body.dataset)) document.body.dataset.ready = '';
    if (opt.frames && seen.size >= opt.frames) {
      document.body.dataset.done = '';
      video.srcObject.getTracks().forEach((t) => t.stop());
      return;
    }
  }
}

// --- start ------------------------------------------------------------------------------------------

async function start(mode) {
  try {
    if (mode === 'photo') {
      await runPhoto();
      document.body.dataset.ready = '';
    } else {
      if (!navigator.mediaDevices?.getUserMedia) throw new Error('this browser has no camera API (or the page is not on https/localhost)');
      await runCamera();
    }
  } catch (e) {
    fail(e);
  }
}

function fail(e) {
  record.errors.push(String(e?.message ?? e));
  $('status').textContent = `error: ${e?.message ?? e}`;
  $('status').className = 'err';
  document.body.dataset.ready = '';
  document.body.dataset.done = '';
}

load()
  .then(() => {
    $('camera').addEventListener('click', () => start('camera'));
    $('photo').addEventListener('click', () => start('photo'));
    return start(opt.mode);
  })
  .catch(fail);
