#!/usr/bin/env node
// The web solver benchmark in Node (driven by experiments/bench_web.py).
//
//   node web/tools/bench_web.mjs INPUT.json OUTPUT.json
//
// INPUT.json: bench_core.mjs's input plus {modules: [{name, path, options}], tfjs_model_dir}.
// OUTPUT.json: {results (bench_core.mjs), environment}. One line on stderr and exit 1 on failure.

import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { runBench } from './bench_core.mjs';

const require = createRequire(import.meta.url);

/** OpenCV.js, initialised, wrapped: the Emscripten module is a thenable that resolves to itself,
 * so returning it from an async function (or awaiting it) would never settle. */
async function loadOpenCV() {
  const cv = require('@techstark/opencv-js');
  if (!cv.Mat) await new Promise((resolve) => (cv.onRuntimeInitialized = resolve));
  return { cv };
}

async function loadTFJS(dir) {
  const log = console.log;
  const warn = console.warn;
  console.log = console.warn = () => {};
  const tf = await import('@tensorflow/tfjs');
  await tf.setBackend('cpu');
  await tf.ready();
  console.log = log;
  console.warn = warn;
  const json = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
  const handler = {
    load: async () =>
      tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const specs = manifest.flatMap((g) => g.weights);
        const buffers = [];
        for (const g of manifest) {
          for (const rel of g.paths) {
            if (rel.includes('..') || path.isAbsolute(rel)) throw new Error(`unsafe weight path ${JSON.stringify(rel)}`);
            const b = await readFile(path.join(dir, rel));
            buffers.push(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
          }
        }
        return [specs, tf.io.concatenateArrayBuffers(buffers)];
      }),
  };
  return { tf, model: await tf.loadLayersModel(handler) };
}

async function main() {
  const [inputPath, outputPath] = process.argv.slice(2);
  if (process.argv.length !== 4) throw new Error('usage: node bench_web.mjs INPUT.json OUTPUT.json');
  const input = JSON.parse(await readFile(inputPath, 'utf8'));
  const modules = [];
  for (const m of input.modules) modules.push({ ...m, mod: await import(pathToFileURL(path.resolve(m.path)).href) });
  const log = (s) => process.stderr.write(`${s}\n`);
  const { cv } = input.opencv ? await loadOpenCV() : { cv: null };
  log('OpenCV.js ready');
  const { tf, model } = input.tfjs_model_dir ? await loadTFJS(input.tfjs_model_dir) : {};
  log('TF.js ready');
  const results = runBench(input, { modules, cv, tf, tfModel: model, log });
  const environment = { runtime: `Node ${process.version}`, cpus: os.cpus().length, load: os.loadavg() };
  await writeFile(outputPath, JSON.stringify({ results, environment }));
}

main().catch((err) => {
  process.stderr.write(`bench_web: ${String(err?.message ?? err).split('\n')[0]}\n`);
  process.exit(1);
});
