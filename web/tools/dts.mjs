// The JS module's TypeScript declarations (pnpjax/js/pnp.d.ts) read with the TypeScript compiler:
// type-check a file that imports them, list what they declare, and check an exported module's
// values against them (`node web/tools/dts.mjs MODULE.js [--usage FILE.ts]`: the pnp.d.ts beside
// MODULE.js, and FILE.ts's calls run against the module; prints one JSON line {ok, problems,
// trackerOptions: the declared option names}, exit status 1 when a value does not match its
// declaration or a call fails).
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import ts from 'typescript';

const OPTIONS = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
  types: [],
};

/** tsc --strict on `files` (copied into a scratch directory side by side): its messages, one line each. */
export function typeCheck(files) {
  const dir = mkdtempSync(join(tmpdir(), 'pnpjax-dts-'));
  try {
    const roots = files.map((f) => {
      const to = join(dir, basename(f));
      copyFileSync(f, to);
      return to;
    });
    const program = ts.createProgram(roots, OPTIONS);
    return ts.getPreEmitDiagnostics(program).map((d) => {
      const where = d.file ? `${basename(d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}: ` : '';
      return where + ts.flattenDiagnosticMessageText(d.messageText, ' ');
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What a declarations file declares: {exports: the names of its values (functions, constants),
 * type(name): a declared type, props(type): {property: optional?}, propType(type, property)}. */
export function declarations(dtsPath) {
  const program = ts.createProgram([dtsPath], OPTIONS);
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(dtsPath);
  const symbols = checker.getExportsOfModule(checker.getSymbolAtLocation(file));
  const byName = Object.fromEntries(symbols.map((s) => [s.getName(), s]));
  const type = (name) => checker.getDeclaredTypeOfSymbol(byName[name]);
  // {property: {optional, kind}}: kind 'number' | 'string' | 'boolean' (or a string literal's
  // value: 'literal:seed') when the declared type is one of those alone, else 'other'.
  const kind = (t) => {
    t = checker.getNonNullableType(t);
    const f = t.getFlags();
    if (f & ts.TypeFlags.StringLiteral) return `literal:${t.value}`;
    if (f & ts.TypeFlags.NumberLike) return 'number';
    if (f & ts.TypeFlags.StringLike) return 'string';
    if (f & ts.TypeFlags.BooleanLike) return 'boolean';
    return 'other';
  };
  const props = (t) =>
    Object.fromEntries(
      checker
        .getPropertiesOfType(t)
        .map((p) => [p.getName(), { optional: (p.getFlags() & ts.SymbolFlags.Optional) !== 0, kind: kind(checker.getTypeOfSymbol(p)) }]),
    );
  const propType = (t, name) => checker.getNonNullableType(checker.getTypeOfSymbol(t.getProperty(name)));
  const values = symbols.filter((s) => s.getFlags() & ts.SymbolFlags.Value).map((s) => s.getName());
  return { exports: values.sort(), type, props, propType };
}

/** Problems of `value` against the properties `props` of a declared type: keys it lacks (not
 * optional), keys it has undeclared, and values of another type than a declared number, string,
 * boolean or string literal. */
export function keyProblems(value, props, where) {
  const problems = [];
  if (value === null || typeof value !== 'object') return [`${where}: not an object`];
  for (const [k, { optional }] of Object.entries(props)) if (!optional && !(k in value)) problems.push(`${where}: lacks ${k}`);
  for (const [k, v] of Object.entries(value)) {
    const p = props[k];
    if (!p) problems.push(`${where}: ${k} is not declared`);
    else if (p.kind.startsWith('literal:') ? v !== p.kind.slice(8) : p.kind !== 'other' && typeof v !== p.kind)
      problems.push(`${where}: ${k} is ${JSON.stringify(v)}, declared ${p.kind}`);
  }
  return problems;
}

/** Run a TypeScript file of calls (web/test/types/usage.ts) against the module at modulePath: it is
 * transpiled into the module's directory (its `./pnp.js` import is that module), imported, removed. */
export async function runUsage(usagePath, modulePath) {
  const js = ts.transpileModule(readFileSync(usagePath, 'utf8'), {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
  }).outputText;
  const to = join(dirname(resolve(modulePath)), `usage-${process.pid}.mjs`);
  writeFileSync(to, js);
  try {
    await import(pathToFileURL(to).href);
  } finally {
    rmSync(to, { force: true });
  }
}

/** An exported module (and the pnp.d.ts beside it) checked value by value against the declarations. */
export async function checkModule(modulePath) {
  const dts = join(dirname(modulePath), 'pnp.d.ts');
  if (!existsSync(dts)) return { problems: [`no pnp.d.ts beside ${modulePath}`], trackerOptions: [] };
  const d = declarations(dts);
  const mod = await import(pathToFileURL(resolve(modulePath)).href);
  const problems = [];
  const runtime = Object.keys(mod).sort();
  if (runtime.join() !== d.exports.join()) problems.push(`exports: module ${runtime} declared ${d.exports}`);
  const meta = d.type('Metadata');
  problems.push(...keyProblems(mod.metadata, d.props(meta), 'metadata'));
  for (const k of ['source', 'layout']) problems.push(...keyProblems(mod.metadata[k], d.props(d.propType(meta, k)), `metadata.${k}`));
  const det = mod.metadata.layout.detector;
  if (det) problems.push(...keyProblems(det, d.props(d.propType(d.propType(meta, 'layout'), 'detector')), 'metadata.layout.detector'));
  const camera = mod.metadata.camera.name === 'seed' ? 'SeedCameraMetadata' : 'PixelCameraMetadata';
  problems.push(...keyProblems(mod.metadata.camera, d.props(d.type(camera)), 'metadata.camera'));
  // A pose from landmarks the layout projects to at 60 cm, frontal.
  const pts = Object.values(mod.metadata.layout.points);
  const c = mod.metadata.camera;
  const xy = pts.flatMap(([x, y]) => [c.cx + (c.fx * x) / 60, c.cy + (c.fy * y) / 60]);
  const pose = mod.estimatePose(xy);
  problems.push(...keyProblems(pose, d.props(d.type('Pose')), 'estimatePose()'));
  if (pose.quaternion.length !== 4 || pose.translation.length !== 3) problems.push('estimatePose(): tuple lengths');
  // Every declared refinement option is one the module reads: a bad value is refused by name.
  for (const k of Object.keys(d.props(d.type('RefineOptions')))) {
    try {
      mod.estimatePose(xy, undefined, { [k]: 'not an option value' });
      problems.push(`estimatePose: declared option ${k} is not read`);
    } catch (e) {
      if (!e.message.includes(k)) problems.push(`estimatePose: option ${k}: ${e.message}`);
    }
  }
  problems.push(...keyProblems(mod.toThreeJS(pose), d.props(d.type('ThreePose')), 'toThreeJS()'));
  const three = d.type('ThreeCameraSettings');
  const settings = mod.threeCamera();
  problems.push(...keyProblems(settings, d.props(three), 'threeCamera()'));
  if (settings.view) problems.push(...keyProblems(settings.view, d.props(d.propType(three, 'view')), 'threeCamera().view'));
  const options = d.props(d.type('TrackerOptions'));
  if (mod.metadata.tracker) {
    for (const k of Object.keys(options)) {
      try {
        mod.createTracker({ [k]: 1 });
      } catch (e) {
        problems.push(`createTracker: declared option ${k} refused: ${e.message}`);
      }
    }
    let refused = false;
    try {
      mod.createTracker({ notAnOption: 1 });
    } catch {
      refused = true;
    }
    if (!refused) problems.push('createTracker: an undeclared option was taken');
    problems.push(...keyProblems(mod.createTracker(), d.props(d.type('Tracker')), 'createTracker()'));
  }
  return { problems, trackerOptions: Object.keys(options).sort() };
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  const [modulePath, flag, usagePath] = process.argv.slice(2);
  if (!modulePath || (flag && (flag !== '--usage' || !usagePath))) {
    process.stderr.write('usage: node web/tools/dts.mjs MODULE.js [--usage FILE.ts]\n');
    process.exit(2);
  }
  const { problems, trackerOptions } = await checkModule(modulePath);
  if (usagePath) {
    try {
      await runUsage(usagePath, modulePath);
    } catch (e) {
      problems.push(`${basename(usagePath)}: ${e.message}`);
    }
  }
  process.stdout.write(JSON.stringify({ ok: problems.length === 0, problems, trackerOptions }) + '\n');
  process.exit(problems.length ? 1 : 0);
}
