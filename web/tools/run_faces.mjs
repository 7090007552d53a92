#!/usr/bin/env node
// Open the faces demo (web/demo/faces.html) in headless Debian chromium with a fake webcam, wait
// until it is done, save what it measured (window.pnpjaxFaces) and a screenshot.
//
//   node web/tools/run_faces.mjs URL OUT.json SCREENSHOT.png [--video FILE.y4m] [--timeout S] [--chromium PATH]
//
// --video feeds FILE to Chromium's fake capture device (--use-file-for-fake-video-capture); the page
// then waits for <body data-done> (camera mode with frames=N), else for <body data-ready>.
// Every request is checked: one that leaves 127.0.0.1 is aborted and listed in "offsite".
// OUT.json: {"record": <window.pnpjaxFaces>, "pose": <#pose JSON>, "offsite": [urls], "console": [errors/warnings],
//            "pageErrors": [...], "failedRequests": [...], "seconds": wall time from navigation to done}
// Exits non-zero with a one-line message if the page is not done within --timeout (default 120 s).

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { HEADLESS_FLAGS } from './chromium.mjs';

function fail(message) {
  process.stderr.write(`run_faces: ${String(message).split('\n')[0]}\n`);
  process.exit(1);
}

const FLAGS = [
  ...HEADLESS_FLAGS,
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

/** Only the local server (and in-page data/blob URLs) may be reached. */
export function isLocal(url) {
  const u = new URL(url);
  return (
    u.protocol === 'data:' || u.protocol === 'blob:' || ((u.protocol === 'http:' || u.protocol === 'ws:') && u.hostname === '127.0.0.1')
  );
}

async function main() {
  const argv = process.argv.slice(2);
  const take = (flag, dflt) => {
    const i = argv.indexOf(flag);
    return i < 0 ? dflt : argv.splice(i, 2)[1];
  };
  const executablePath = take('--chromium', process.env.CHROMIUM ?? '/usr/bin/chromium');
  const video = take('--video', null);
  const timeout = 1000 * Number(take('--timeout', '120'));
  const [url, outPath, shotPath] = argv;
  if (argv.length !== 3 || !(timeout > 0))
    fail('usage: node run_faces.mjs URL OUT.json SCREENSHOT.png [--video FILE] [--timeout S] [--chromium PATH]');
  const args = [...FLAGS, ...(video ? [`--use-file-for-fake-video-capture=${path.resolve(video)}`] : [])];
  const { chromium } = await import('playwright-core');
  const profile = await mkdtemp(path.join(os.tmpdir(), 'pnpjax-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args,
    viewport: { width: 1200, height: 760 },
  });
  const report = { offsite: [], console: [], pageErrors: [], failedRequests: [] };
  let t0 = 0;
  try {
    await context.route('**/*', (route) => {
      const u = route.request().url();
      if (isLocal(u)) return route.continue();
      report.offsite.push(u);
      return route.abort('blockedbyclient');
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => {
      if (['error', 'warning'].includes(m.type())) report.console.push(m.text());
    });
    page.on('pageerror', (e) => report.pageErrors.push(String(e)));
    page.on('requestfailed', (r) => report.failedRequests.push(r.url()));
    t0 = Date.now();
    await page.goto(url, { waitUntil: 'load', timeout });
    const done = new URL(url).searchParams.has('frames') ? 'body[data-done]' : 'body[data-ready]';
    await page.waitForSelector(done, { timeout: Math.max(1000, timeout - (Date.now() - t0)) });
    report.seconds = (Date.now() - t0) / 1000;
    report.record = await page.evaluate(() => window.pnpjaxFaces);
    report.pose = JSON.parse(await page.textContent('#pose'));
    await page.screenshot({ path: shotPath, fullPage: true });
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
  await writeFile(outPath, JSON.stringify(report));
}

main().catch((err) => fail(err && err.message ? err.message : err));
