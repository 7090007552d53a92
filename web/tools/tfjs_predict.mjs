#!/usr/bin/env node
// Run a TF.js model (layers or graph format) on the CPU backend in plain Node (no HTTP, no tfjs-node).
//
//   node web/tools/tfjs_predict.mjs MODEL_DIR INPUT.json OUTPUT.json
//
// INPUT.json: nested list [N, K, 2]. OUTPUT.json: {"output": [[...]], "metadata": {...}|null, "format"}.
// model.json's "format" picks the loader: "graph-model" -> tf.loadGraphModel, else tf.loadLayersModel.
// The model is loaded through a small fs-backed IOHandler that does what tf.io.http does in
// the browser (model.json -> getModelArtifactsForJSON, shards concatenated in manifest order).
// Exits non-zero with a one-line message on any error.

import { readFile, writeFile, realpath } from 'node:fs/promises';
import path from 'node:path';

function fail(message) {
  process.stderr.write(`tfjs_predict: ${String(message).split('\n')[0]}\n`);
  process.exit(1);
}

/** Resolve a manifest path inside modelDir, refusing absolute paths, URLs and escapes. */
async function shardPath(modelDir, rel) {
  if (typeof rel !== 'string' || rel === '' || rel.includes('://') || path.isAbsolute(rel) ||
      rel.split(/[\\/]/).includes('..')) {
    throw new Error(`unsafe weight path ${JSON.stringify(rel)}`);
  }
  const root = await realpath(modelDir);
  const target = await realpath(path.join(modelDir, rel));
  if (target !== root && !target.startsWith(root + path.sep)) {
    throw new Error(`weight path ${JSON.stringify(rel)} resolves outside the model directory`);
  }
  return target;
}

/** A minimal IOHandler reading model.json and its shards from disk. */
function fileHandler(tf, modelDir) {
  return {
    async load() {
      const modelJSON = JSON.parse(await readFile(path.join(modelDir, 'model.json'), 'utf8'));
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs = [];
        const buffers = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const rel of group.paths) {
            const bytes = await readFile(await shardPath(modelDir, rel));
            buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
          }
        }
        return [specs, tf.io.concatenateArrayBuffers(buffers)];
      });
    },
  };
}

async function main() {
  const [modelDir, inputPath, outputPath] = process.argv.slice(2);
  if (!modelDir || !inputPath || !outputPath || process.argv.length !== 5) {
    fail('usage: node tfjs_predict.mjs MODEL_DIR INPUT.json OUTPUT.json');
  }
  // Silence the "install tfjs-node" banner and other chatter; stdout is not our output channel.
  const log = console.log;
  const warn = console.warn;
  console.log = () => {};
  console.warn = () => {};
  let tf;
  try {
    tf = await import('@tensorflow/tfjs');
  } catch (err) {
    fail(`cannot import @tensorflow/tfjs (run: cd web && npm ci): ${err.message}`);
  }
  try {
    if (!(await tf.setBackend('cpu'))) throw new Error('could not select the cpu backend');
    await tf.ready();
    if (tf.getBackend() !== 'cpu') throw new Error(`backend is ${tf.getBackend()}, expected cpu`);

    const { format } = JSON.parse(await readFile(path.join(modelDir, 'model.json'), 'utf8'));
    const graph = format === 'graph-model';
    const model = graph ? await tf.loadGraphModel(fileHandler(tf, modelDir))
                        : await tf.loadLayersModel(fileHandler(tf, modelDir));
    const input = JSON.parse(await readFile(inputPath, 'utf8'));
    const x = tf.tensor(input, undefined, 'float32');
    const want = model.inputs[0].shape;  // [null, K, 2] (layers) or [-1, K, 2] (graph)
    if (x.rank !== want.length || x.shape.slice(1).some((d, i) => d !== want[i + 1])) {
      throw new Error(`input shape [${x.shape}] does not match model input [${want}]`);
    }
    const y = model.predict(x);
    const output = await y.array();
    const metadata = (graph ? model.metadata : model.getUserDefinedMetadata()) ?? null;
    await writeFile(outputPath, JSON.stringify({ output, metadata, format: format ?? 'layers-model',
                                                  backend: tf.getBackend(), tfjsVersion: tf.version.tfjs }));
    x.dispose();
    y.dispose();
  } catch (err) {
    fail(err && err.message ? err.message : err);
  } finally {
    console.log = log;
    console.warn = warn;
  }
}

main().catch((err) => fail(err && err.message ? err.message : err));
