#!/usr/bin/env node
// The web solver benchmark in headless Chromium (Debian's /usr/bin/chromium via playwright-core):
// the same bench_core.mjs as in Node, in one page, with OpenCV.js and TF.js (cpu backend) loaded
// from web/node_modules. Files are served from disk by request interception (no network).
//
//   node web/tools/bench_web_chromium.mjs INPUT.json OUTPUT.json [--chromium PATH]
//
// INPUT.json and OUTPUT.json as bench_web.mjs. One line on stderr and exit 1 on failure.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { HEADLESS_FLAGS } from './chromium.mjs';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ORIGIN = 'http://bench.invalid';

const PAGE = `<!doctype html><meta charset="utf-8"><title>bench</title>
<script src="/web/node_modules/@techstark/opencv-js/dist/opencv.js"></script>
<script src="/web/node_modules/@tensorflow/tfjs/dist/tf.min.js"></script>
<script type="module">
import { runBench } from '/web/tools/bench_core.mjs';
try {
  const input = await (await fetch('/input.json')).json();
  const cv = window.cv; // a thenable resolving to itself: never await it
  if (!cv.Mat) await new Promise((resolve) => (cv.onRuntimeInitialized = resolve));
  await tf.setBackend('cpu');
  await tf.ready();
  const tfModel = input.tfjs_model_dir ? await tf.loadLayersModel('/model/model.json') : null;
  const modules = [];
  for (const [i, m] of input.modules.entries()) modules.push({ ...m, mod: await import('/m/' + i + '.js') });
  const results = runBench(input, { modules, cv: input.opencv ? cv : null, tf, tfModel });
  window.__result = JSON.stringify({ results, environment: { runtime: navigator.userAgent.match(/Chrome\\/[0-9.]+/)?.[0] ?? 'Chromium', backend: tf.getBackend() } });
} catch (err) {
  window.__error = String(err && err.stack || err);
}
</script>`;

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json', '.html': 'text/html' };

async function main() {
  const argv = process.argv.slice(2);
  let executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  const i = argv.indexOf('--chromium');
  if (i >= 0) [executablePath] = argv.splice(i, 2).slice(1);
  const [inputPath, outputPath] = argv;
  if (argv.length !== 2) throw new Error('usage: node bench_web_chromium.mjs INPUT.json OUTPUT.json [--chromium PATH]');
  const input = JSON.parse(await readFile(inputPath, 'utf8'));
  const files = (url) => {
    const p = decodeURIComponent(new URL(url).pathname);
    if (p === '/index.html') return { body: PAGE, type: 'text/html' };
    if (p === '/input.json') return { file: inputPath };
    if (p.startsWith('/m/')) return { file: input.modules[Number.parseInt(p.slice(3), 10)]?.path };
    if (p.startsWith('/model/') && input.tfjs_model_dir) return { file: path.join(input.tfjs_model_dir, path.basename(p)) };
    if (p.startsWith('/web/') && !p.split('/').includes('..')) return { file: path.join(WEB, p.slice(5)) };
    return null;
  };
  const { chromium } = await import('playwright-core');
  const profile = await mkdtemp(path.join(os.tmpdir(), 'pnpjax-bench-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: HEADLESS_FLAGS });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    await page.route('**/*', async (route) => {
      const url = route.request().url();
      const hit = url.startsWith(ORIGIN) ? files(url) : null;
      if (!hit || (!hit.body && !hit.file)) return route.fulfill({ status: 404, body: 'not found' });
      const body = hit.body ?? (await readFile(hit.file).catch(() => null));
      if (body === null) return route.fulfill({ status: 404, body: 'not found' });
      return route.fulfill({ status: 200, body, contentType: hit.type ?? TYPES[path.extname(hit.file)] ?? 'application/octet-stream' });
    });
    await page.goto(`${ORIGIN}/index.html`, { waitUntil: 'load', timeout: 120000 });
    await page.waitForFunction(() => window.__result || window.__error, null, { timeout: 0, polling: 1000 });
    const error = await page.evaluate(() => window.__error);
    if (error) throw new Error(`in the page: ${error}`);
    await writeFile(outputPath, await page.evaluate(() => window.__result));
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench_web_chromium: ${String(err?.message ?? err).split('\n')[0]}\n`);
  process.exit(1);
});
