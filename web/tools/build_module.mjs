#!/usr/bin/env node
// Minify the JS module's source for export: pnpjax/js/pnp.mjs -> pnpjax/js/pnp.min.mjs (with the
// tracker: `pnpjax export --format js --tracker`) and pnpjax/js/pnp.notrack.min.mjs (the default
// export: createTracker only throws a one-line error naming the flag).
//
//   node web/tools/build_module.mjs [--check]
//
// The output is the source's /*! header, its injection line unchanged, then its optional parts
// (`// (optional NAME)` ... `// (end NAME)`), each minified on a line of its own that starts with
// /*NAME*/ (pnpjax/jsmodule.py keeps only the parts an export needs), then the rest of the code after
// the injection line minified by terser (GENERATED stays a free name: nothing is folded from the
// placeholder).
// `pnpjax export` fills the injection line of pnp.min.mjs (pnpjax/jsmodule.py). The build also
// writes the wasm bytes of web/tools/mlp_wasm.mjs into the source's `const MLP = '...';` line.
// --check exits 1 if the committed pnp.mjs or pnp.min.mjs differs from a fresh build (`npm test`).

import { readFile, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { minify } from 'terser';

import { MLP_WASM } from './mlp_wasm.mjs';

const SOURCE = fileURLToPath(new URL('../../pnpjax/js/pnp.mjs', import.meta.url));
const TARGET = fileURLToPath(new URL('../../pnpjax/js/pnp.min.mjs', import.meta.url));
const TARGET_NO_TRACKER = fileURLToPath(new URL('../../pnpjax/js/pnp.notrack.min.mjs', import.meta.url));
export const INJECTION_LINE = "const GENERATED = JSON.parse('null');";
// An optional part of the source: `// (optional NAME)` ... `// (end NAME)`, whole lines.
const OPTIONAL = /^\/\/ \(optional (\w+)\)\n([\s\S]*?)^\/\/ \(end \1\)\n/gm;
const MLP_LINE = /^const MLP =\s*'[A-Za-z0-9+/=]*';$/m;

/** The source with its `const MLP = '...';` line holding the wasm bytes of mlp_wasm.mjs. */
export function withWasm(source) {
  if (!MLP_LINE.test(source)) throw new Error("the source must contain a line const MLP = '<base64>';");
  return source.replace(MLP_LINE, `const MLP =\n  '${Buffer.from(MLP_WASM).toString('base64')}';`); // (as prettier wraps it)
}

export async function build(source) {
  const lines = source.split('\n');
  const at = lines.indexOf(INJECTION_LINE);
  if (at < 0 || lines.indexOf(INJECTION_LINE, at + 1) >= 0)
    throw new Error(`the source must contain the line ${INJECTION_LINE} exactly once`);
  const header = source.slice(0, source.indexOf('*/') + 2);
  if (!header.startsWith('/*!')) throw new Error('the source must start with a /*! header comment');
  const parts = [];
  const body = lines
    .slice(at + 1)
    .join('\n')
    .replace(OPTIONAL, (_, name, code) => (parts.push([name, code]), ''));
  const options = () => ({ ecma: 2020, compress: { passes: 2 }, format: { comments: false } }); // (terser writes into them)
  const core = await minify(body, { ...options(), module: true, mangle: { reserved: ['GENERATED'] } });
  // A part is a script whose top-level function keeps its name (the core calls it by that name).
  const minified = await Promise.all(parts.map(async ([name, code]) => `/*${name}*/${(await minify(code, options())).code}\n`));
  return `${header}\n${INJECTION_LINE}\n${minified.join('')}${core.code}\n`;
}

// What a module exported without the tracker has in its place.
const NO_TRACKER =
  "  const createTracker = () => fail('createTracker', 'not in this module: export it with `pnpjax export --format js --tracker`');\n";

/** The source without the tracker: the code between its markers becomes a createTracker that throws. */
export function withoutTracker(source) {
  const a = source.indexOf('  // (tracker-begin');
  const b = source.indexOf('\n', source.indexOf('  // (tracker-end)')) + 1;
  if (a < 0 || b <= a) throw new Error('the source must mark the tracker with (tracker-begin) ... (tracker-end)');
  return source.slice(0, a) + NO_TRACKER + source.slice(b);
}

async function main() {
  const written = await readFile(SOURCE, 'utf8');
  const source = withWasm(written);
  const builds = [
    [TARGET, await build(source)],
    [TARGET_NO_TRACKER, await build(withoutTracker(source))],
  ];
  if (process.argv.includes('--check')) {
    if (written !== source) {
      process.stderr.write('build_module: the wasm bytes in pnpjax/js/pnp.mjs are stale; run `node web/tools/build_module.mjs`\n');
      process.exit(1);
    }
    for (const [target, built] of builds) {
      if ((await readFile(target, 'utf8').catch(() => '')) !== built) {
        process.stderr.write(`build_module: pnpjax/js/${basename(target)} is stale; run \`node web/tools/build_module.mjs\`\n`);
        process.exit(1);
      }
    }
    return;
  }
  if (written !== source) await writeFile(SOURCE, source);
  for (const [target, built] of builds) await writeFile(target, built);
}

main().catch((err) => {
  process.stderr.write(`build_module: ${String(err?.message ?? err).split('\n')[0]}\n`);
  process.exit(1);
});
