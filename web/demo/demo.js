// pnpjax demo: synthetic landmarks from a slider-driven head pose -> the exported solver(s) ->
// head axes drawn over the landmarks, and the poses printed in <pre id="pose"> as JSON.
//
// Query parameters (all optional):
//   js=URL of a `pnpjax export --format js` module     (default /models/js/pnp.js; "none" to skip)
//   tfjs=URL of a `--format tfjs` model.json          (default /models/tfjs/model.json; "none" to skip)
//   yaw, pitch, roll (degrees), distance, x, y (cm): initial slider values
// TF.js is loaded from web/node_modules (served at /node_modules) and runs on its cpu backend.
// <body data-ready> is set once the first pose is printed (the headless test waits for it).

const params = new URLSearchParams(location.search);
const JS_URL = params.get('js') ?? '/models/js/pnp.js';
const TFJS_URL = params.get('tfjs') ?? '/models/tfjs/model.json';
const TF_SCRIPT = params.get('tfjs-script') ?? '/node_modules/@tensorflow/tfjs/dist/tf.min.js';
const SLIDERS = ['yaw', 'pitch', 'roll', 'distance', 'x', 'y'];
const AXIS_CM = 6;
const $ = (id) => document.getElementById(id);
/** A URL from the query, only on this page's own server: a link must not make the page run another site's code. */
function sameOrigin(url, what) {
  const u = new URL(url, location.href);
  if (u.origin !== location.origin) throw new Error(`${what} must be on this server, got ${u.origin}`);
  return u.href;
}

// --- quaternions (x, y, z, w) ----------------------------------------------------------------

const qmul = ([ax, ay, az, aw], [bx, by, bz, bw]) => [
  aw * bx + ax * bw + ay * bz - az * by,
  aw * by - ax * bz + ay * bw + az * bx,
  aw * bz + ax * by - ay * bx + az * bw,
  aw * bw - ax * bx - ay * by - az * bz,
];
const axisAngle = (axis, deg) => {
  const h = (deg * Math.PI) / 360;
  return [...axis.map((a) => a * Math.sin(h)), Math.cos(h)];
};
const rotate = ([x, y, z, w], [px, py, pz]) => [
  (1 - 2 * (y * y + z * z)) * px + 2 * (x * y - z * w) * py + 2 * (x * z + y * w) * pz,
  2 * (x * y + z * w) * px + (1 - 2 * (x * x + z * z)) * py + 2 * (y * z - x * w) * pz,
  2 * (x * z - y * w) * px + 2 * (y * z + x * w) * py + (1 - 2 * (x * x + y * y)) * pz,
];
const canonical = (q) => {
  const n = Math.hypot(...q) * (q[3] < 0 ? -1 : 1);
  return q.map((v) => v / n);
};
// OpenCV <-> OpenGL camera frames: 180 degrees about x (its own inverse up to the quaternion's sign).
const flipFrame = ({ quaternion: q, translation: t }) => ({
  quaternion: canonical([q[3], -q[2], q[1], -q[0]]),
  translation: [t[0], -t[1], -t[2]],
});

// --- state -------------------------------------------------------------------------------------

const state = { solver: null, model: null, meta: null, errors: {} };

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.append(s);
  });
}

async function ensureTf() {
  if (!window.tf) await loadScript(sameOrigin(TF_SCRIPT, 'tfjs-script'));
  if (tf.getBackend() !== 'cpu') await tf.setBackend('cpu');
  await tf.ready();
}

/** A `pnpjax export --format tfjs` model, whichever TF.js format the recipe needed (web/README.md). */
async function loadPnpjaxModel(url) {
  const { format } = await (await fetch(url)).json();
  const model = format === 'graph-model' ? await tf.loadGraphModel(url) : await tf.loadLayersModel(url);
  return { model, metadata: format === 'graph-model' ? model.metadata : model.getUserDefinedMetadata() };
}

async function loadRuntimes() {
  if (JS_URL !== 'none') {
    try {
      state.solver = await import(sameOrigin(JS_URL, 'js'));
      state.meta = state.solver.metadata;
    } catch (e) {
      state.errors.js = `cannot load the JS module ${JS_URL}: ${e.message}`;
    }
  }
  if (TFJS_URL !== 'none') {
    try {
      await ensureTf();
      const { model, metadata: meta } = await loadPnpjaxModel(sameOrigin(TFJS_URL, 'tfjs'));
      state.model = model;
      if (!state.meta) state.meta = meta;
      else if (JSON.stringify(meta.layout) !== JSON.stringify(state.meta.layout) ||
               meta.camera.name !== state.meta.camera.name) {
        state.errors.tfjs = 'the TF.js model and the JS module have different layouts or cameras';
        state.model = null;
      }
    } catch (e) {
      state.errors.tfjs = `cannot load the TF.js model ${TFJS_URL}: ${e.message}`;
      state.model = null;
    }
  }
  if (!state.meta) throw new Error(Object.values(state.errors).join('; ') || 'no model to load (js=none, tfjs=none)');
}

// --- geometry of the export camera ---------------------------------------------------------------

const isGL = () => state.meta.frame.startsWith('OpenGL');
const layoutPoints = () => Object.values(state.meta.layout.points);

/** Image coordinates (the export camera's) of layout points under a pose in the export frame. */
function project(pose, pts) {
  const { fx, fy, cx, cy } = state.meta.camera;
  return pts.map((p) => {
    let [x, y, z] = rotate(pose.quaternion, p).map((v, i) => v + pose.translation[i]);
    if (isGL()) [y, z] = [-y, -z];  // to OpenCV axes, where the camera looks down +z
    return [fx * (x / z) + cx, fy * (y / z) + cy];
  });
}

/** The export camera's image coordinates -> canvas pixels. */
function toCanvas([u, v], canvas) {
  const cam = state.meta.camera;
  if (cam.name === 'seed') return [u * canvas.width, (1 - v) * canvas.height];
  return [(u * canvas.width) / cam.width, (v * canvas.height) / cam.height];
}

/** The slider pose in the three.js/OpenGL frame (R = Rz(roll) Ry(yaw) Rx(pitch)), then the export frame. */
function sliderPose(v) {
  const q = qmul(axisAngle([0, 0, 1], v.roll), qmul(axisAngle([0, 1, 0], v.yaw), axisAngle([1, 0, 0], v.pitch)));
  const gl = { quaternion: canonical(q), translation: [v.x, v.y, -v.distance] };
  return isGL() ? gl : flipFrame(gl);
}

// --- the two runtimes ------------------------------------------------------------------------------

function runJs(landmarks) {
  if (!state.solver) return { error: state.errors.js ?? 'not loaded' };
  const t0 = performance.now();
  const pose = state.solver.estimatePose(landmarks);
  return { ...pose, three: state.solver.toThreeJS(pose), ms: performance.now() - t0 };
}

function runTfjs(landmarks) {
  if (!state.model) return { error: state.errors.tfjs ?? 'not loaded' };
  const t0 = performance.now();
  const raw = tf.tidy(() => Array.from(state.model.predict(tf.tensor3d([landmarks], [1, landmarks.length, 2], 'float32')).dataSync()));
  // A layers model returns an unnormalised quaternion (a graph model a unit one): normalise it (w >= 0).
  return { quaternion: canonical(raw.slice(0, 4)), translation: raw.slice(4, 7), raw, backend: tf.getBackend(),
           ms: performance.now() - t0 };
}

// --- drawing ---------------------------------------------------------------------------------------

function drawAxes(ctx, pose, style) {
  const [o, x, y, z] = project(pose, [[0, 0, 0], [AXIS_CM, 0, 0], [0, AXIS_CM, 0], [0, 0, AXIS_CM]])
    .map((p) => toCanvas(p, ctx.canvas));
  ctx.save();
  ctx.lineWidth = style.width;
  ctx.setLineDash(style.dash ?? []);
  const colors = style.dark ? ['#700', '#050', '#007'] : ['#d22', '#1a1', '#22d'];
  [x, y, z].forEach((end, i) => {
    ctx.strokeStyle = colors[i];
    ctx.beginPath();
    ctx.moveTo(...o);
    ctx.lineTo(...end);
    ctx.stroke();
  });
  ctx.restore();
}

function draw(landmarks, truth, results) {
  const canvas = $('view');
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (truth) drawAxes(ctx, truth, { width: 2, dash: [6, 4] });
  if (results.js?.quaternion) drawAxes(ctx, results.js, { width: 5 });
  if (results.tfjs?.quaternion) drawAxes(ctx, results.tfjs, { width: 1.5, dark: true });
  const names = Object.keys(state.meta.layout.points);
  ctx.font = '11px system-ui, sans-serif';
  landmarks.forEach((p, i) => {
    const [cx, cy] = toCanvas(p, canvas);
    ctx.fillStyle = '#f80';
    ctx.beginPath();
    ctx.arc(cx, cy, 4, 0, 2 * Math.PI);
    ctx.fill();
    ctx.fillStyle = '#444';
    ctx.fillText(names[i], cx + 6, cy - 6);
  });
}

function show(landmarks, truth) {
  const results = { js: runJs(landmarks), tfjs: runTfjs(landmarks) };
  draw(landmarks, truth, results);
  const out = {
    layout: state.meta.layout.name,
    camera: state.meta.camera.name,
    frame: state.meta.frame,
    units: state.meta.units,
    sliders: Object.fromEntries(SLIDERS.map((id) => [id, Number($(id).value)])),
    landmarks,
    truth,
    js: results.js,
    tfjs: results.tfjs,
  };
  $('pose').textContent = JSON.stringify(out, null, 1);
}

function update() {
  const v = Object.fromEntries(SLIDERS.map((id) => [id, Number($(id).value)]));
  SLIDERS.forEach((id) => { document.querySelector(`output[for=${id}]`).textContent = v[id]; });
  const truth = sliderPose(v);
  // float32 landmarks: what TF.js sees, so both runtimes and the test's JAX run get the same numbers.
  const landmarks = project(truth, layoutPoints()).map((p) => p.map(Math.fround));
  show(landmarks, truth);
}

// --- start -----------------------------------------------------------------------------------------

async function main() {
  for (const id of SLIDERS) {
    if (params.has(id)) $(id).value = params.get(id);
    $(id).addEventListener('input', update);
  }
  await loadRuntimes();
  $('k').textContent = `${layoutPoints().length} ${state.meta.layout.name}`;
  const cam = state.meta.camera;
  if (cam.name !== 'seed') $('view').height = Math.round(($('view').width * cam.height) / cam.width);
  const errors = Object.values(state.errors);
  $('status').textContent = `layout ${state.meta.layout.name}, camera ${cam.name}, model ${state.meta.source.config}` +
    ` (${[state.solver && 'JS module', state.model && 'TF.js ' + tf.version.tfjs].filter(Boolean).join(' + ')})` +
    (errors.length ? ` — ${errors.join('; ')}` : '');
  if (errors.length) $('status').className = 'err';
  update();
  document.body.dataset.ready = '';
}

main().catch((e) => {
  $('status').textContent = `error: ${e.message}`;
  $('status').className = 'err';
  $('pose').textContent = JSON.stringify({ error: e.message });
  document.body.dataset.ready = '';
});
