#!/usr/bin/env node
// face-api.js (the detector of the demo page) on image files, in Node, offline: writes the 68
// landmarks of every face as JSON (and optionally .npy) that `pnpjax predict` reads for a layout
// that names this detector (faceapi10 selects its 10 points itself).
//
//   node web/tools/detect_faces.mjs IMAGE... --out faces.json [--npy faces.npy]
//        [--backend wasm|cpu] [--detector tiny|ssd] [--landmarks full|tiny] [--input-size 416]
//        [--min-score 0.5] [--max-faces N] [--raw faceapi.json]
//
// IMAGE: .jpg/.jpeg or .png. Models come from @vladmandic/face-api's model/ directory in
// web/node_modules; nothing is downloaded.
// faces.json: {"detector": "face-api.js/68", "options": {...}, "backend": ...,
//   "images": [{"file", "width", "height", "faces": [{"score", "box": [x, y, w, h], "landmarks": [[x, y] x 68]}]}],
//   "faces": [{"image": i, "face": j}, ...],        // one row per face, in the order of "landmarks"
//   "landmarks": [[[x, y] x 68], ...]}             // pixels, x right, y down, origin at the top-left corner
// faces.npy: float64 (N, 68, 2), the same rows as "landmarks".
// faceapi.json (--raw): JSON.stringify of face-api.js's own results (`detectAllFaces().withFaceLandmarks()`),
//   all images' faces in one list, the same rows: `pnpjax predict` reads this form too.
// Exits 2 with a one-line message on a user error (missing/undecodable image, bad option), writing nothing.

import { readFile, writeFile, rename } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MODELS = path.join(WEB, 'node_modules', '@vladmandic', 'face-api', 'model');
export const DETECTOR = 'face-api.js/68';

class UserError extends Error {}

function parseArgs(argv) {
  const opts = {
    images: [],
    out: null,
    npy: null,
    raw: null,
    backend: 'wasm',
    detector: 'tiny',
    landmarks: 'full',
    inputSize: 416,
    minScore: 0.5,
    maxFaces: Infinity,
  };
  const num = (flag, v, ok) => {
    const x = Number(v);
    if (!ok(x)) throw new UserError(`${flag}: bad value ${JSON.stringify(v)}`);
    return x;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      opts.images.push(a);
      continue;
    }
    const v = argv[++i];
    if (v === undefined) throw new UserError(`${a} needs a value`);
    const choose = (choices) => {
      if (!choices.includes(v)) throw new UserError(`${a} must be one of ${choices.join(', ')}, got ${JSON.stringify(v)}`);
      return v;
    };
    if (a === '--out') opts.out = v;
    else if (a === '--npy') opts.npy = v;
    else if (a === '--raw') opts.raw = v;
    else if (a === '--backend') opts.backend = choose(['wasm', 'cpu']);
    else if (a === '--detector') opts.detector = choose(['tiny', 'ssd']);
    else if (a === '--landmarks') opts.landmarks = choose(['full', 'tiny']);
    else if (a === '--input-size') opts.inputSize = num(a, v, (x) => Number.isInteger(x) && x >= 32 && x % 32 === 0 && x <= 1024);
    else if (a === '--min-score') opts.minScore = num(a, v, (x) => x >= 0 && x <= 1);
    else if (a === '--max-faces') opts.maxFaces = num(a, v, (x) => Number.isInteger(x) && x >= 1);
    else throw new UserError(`unknown option ${a}`);
  }
  if (!opts.images.length || !opts.out)
    throw new UserError('usage: detect_faces.mjs IMAGE... --out faces.json [--npy faces.npy] [options]');
  if (!opts.out.endsWith('.json')) throw new UserError(`--out must end in .json, got ${opts.out}`);
  if (opts.npy !== null && !opts.npy.endsWith('.npy')) throw new UserError(`--npy must end in .npy, got ${opts.npy}`);
  if (opts.raw !== null && !opts.raw.endsWith('.json')) throw new UserError(`--raw must end in .json, got ${opts.raw}`);
  return opts;
}

/** RGB bytes (H*W*3) of a .jpg or .png file. */
async function decode(file) {
  let bytes;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new UserError(`cannot read ${file}: ${e.code ?? e.message}`);
  }
  const ext = path.extname(file).toLowerCase();
  try {
    if (ext === '.jpg' || ext === '.jpeg') {
      const jpeg = require('jpeg-js');
      const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: 1024 });
      return { width: img.width, height: img.height, rgb: img.data };
    }
    if (ext === '.png') {
      const { PNG } = require('pngjs');
      const png = PNG.sync.read(bytes);
      const rgb = new Uint8Array(png.width * png.height * 3);
      for (let i = 0, j = 0; i < png.data.length; i += 4, j += 3) rgb.set(png.data.subarray(i, i + 3), j);
      return { width: png.width, height: png.height, rgb };
    }
  } catch (e) {
    throw new UserError(`cannot decode ${file}: ${String(e.message ?? e).split('\n')[0]}`);
  }
  throw new UserError(`${file}: expected a .jpg, .jpeg or .png image`);
}

/** A float64 .npy file (little-endian, C order). */
function npyBytes(rows, shape) {
  let header = `{'descr': '<f8', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header = header.padEnd(header.length + ((64 - (total % 64)) % 64), ' ') + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const data = Buffer.from(Float64Array.from(rows.flat(2)).buffer);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), data]);
}

async function atomicWrite(file, data) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  await writeFile(tmp, data);
  await rename(tmp, file);
}

/** Load face-api.js on a tfjs backend; returns {faceapi, tf, detect(rgb image) -> faces}. */
export async function loadDetector({ backend = 'wasm', detector = 'tiny', landmarks = 'full', inputSize = 416, minScore = 0.5 } = {}) {
  const quiet = console.log;
  console.log = () => {}; // the "install tfjs-node" banner
  let faceapi, tf;
  try {
    tf = require('@tensorflow/tfjs');
    faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
    if (!(await faceapi.tf.setBackend(backend))) throw new Error(`cannot use the ${backend} backend`);
    await faceapi.tf.ready();
  } finally {
    console.log = quiet;
  }
  const boxNet = detector === 'tiny' ? faceapi.nets.tinyFaceDetector : faceapi.nets.ssdMobilenetv1;
  const markNet = landmarks === 'full' ? faceapi.nets.faceLandmark68Net : faceapi.nets.faceLandmark68TinyNet;
  await boxNet.loadFromDisk(MODELS);
  await markNet.loadFromDisk(MODELS);
  const options =
    detector === 'tiny'
      ? new faceapi.TinyFaceDetectorOptions({ inputSize, scoreThreshold: minScore })
      : new faceapi.SsdMobilenetv1Options({ minConfidence: minScore });
  async function detect({ width, height, rgb }) {
    const x = tf.tensor3d(rgb, [height, width, 3], 'int32');
    try {
      const found = await faceapi.detectAllFaces(x, options).withFaceLandmarks(landmarks === 'tiny');
      return found
        .map((r) => ({
          score: r.detection.score,
          box: [r.detection.box.x, r.detection.box.y, r.detection.box.width, r.detection.box.height],
          landmarks: r.landmarks.positions.map((p) => [p.x, p.y]),
          raw: r,
        }))
        .sort((a, b) => b.box[2] * b.box[3] - a.box[2] * a.box[3]); // largest face first
    } finally {
      x.dispose();
    }
  }
  return { faceapi, tf, backend: faceapi.tf.getBackend(), detect };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const decoded = [];
  for (const file of opts.images) decoded.push(await decode(file)); // all user errors before any work
  const det = await loadDetector(opts);
  const out = {
    detector: DETECTOR,
    backend: det.backend,
    faceapi: det.faceapi.version,
    options: { detector: opts.detector, landmarks: opts.landmarks, inputSize: opts.inputSize, minScore: opts.minScore },
    images: [],
    faces: [],
    landmarks: [],
  };
  const raw = [];
  for (const [i, img] of decoded.entries()) {
    const faces = (await det.detect(img)).slice(0, opts.maxFaces);
    raw.push(...faces.map((f) => f.raw));
    faces.forEach((f) => delete f.raw);
    out.images.push({ file: path.basename(opts.images[i]), width: img.width, height: img.height, faces });
    faces.forEach((f, j) => {
      out.faces.push({ image: i, face: j });
      out.landmarks.push(f.landmarks);
    });
  }
  await atomicWrite(opts.out, JSON.stringify(out));
  if (opts.npy) await atomicWrite(opts.npy, npyBytes(out.landmarks, [out.landmarks.length, 68, 2]));
  if (opts.raw) await atomicWrite(opts.raw, JSON.stringify(raw));
  process.stderr.write(`detect_faces: ${out.landmarks.length} faces in ${decoded.length} images (${det.backend}) -> ${opts.out}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    process.stderr.write(`detect_faces: ${String(e?.message ?? e).split('\n')[0]}\n`);
    process.exit(e instanceof UserError ? 2 : 1);
  });
}
