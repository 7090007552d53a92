#!/usr/bin/env node
// Run a `pnpjax export --format js` module in plain Node.
//
//   node web/tools/js_predict.mjs MODULE.js INPUT.json OUTPUT.json
//
// INPUT.json: {"landmarks": [[...], ...], "camera": <optional estimatePose camera argument>,
//              "options": <optional estimatePose options, e.g. {"refine": 5, "cost": "ml"}>,
//              "bad": [<optional inputs that must throw>, ...]}
// OUTPUT.json: {"poses": [[qx, qy, qz, qw, tx, ty, tz], ...], "three": [[px, py, pz, qx, qy, qz, qw], ...],
//               "errors": ["message" | null per bad input], "metadata": {...}}
// Exits non-zero with a one-line message on any unexpected error.

import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

function fail(message) {
  process.stderr.write(`js_predict: ${String(message).split('\n')[0]}\n`);
  process.exit(1);
}

async function main() {
  const [modulePath, inputPath, outputPath] = process.argv.slice(2);
  if (process.argv.length !== 5) fail('usage: node js_predict.mjs MODULE.js INPUT.json OUTPUT.json');
  const solver = await import(pathToFileURL(path.resolve(modulePath)).href);
  const input = JSON.parse(await readFile(inputPath, 'utf8'));
  const poses = [];
  const three = [];
  for (const landmarks of input.landmarks ?? []) {
    const pose = solver.estimatePose(landmarks, input.camera ?? undefined, input.options ?? undefined);
    poses.push([...pose.quaternion, ...pose.translation]);
    const t = solver.toThreeJS(pose);
    three.push([...t.position, ...t.quaternion]);
  }
  const errors = (input.bad ?? []).map((bad) => {
    try {
      solver.estimatePose(bad.landmarks, bad.camera, bad.options);
      return null;
    } catch (err) {
      return err instanceof Error ? `${err.constructor.name}: ${err.message}` : `non-Error thrown: ${err}`;
    }
  });
  await writeFile(outputPath, JSON.stringify({ poses, three, errors, metadata: solver.metadata }));
}

main().catch((err) => fail(err && err.message ? err.message : err));
