#!/usr/bin/env node
// Open a page in headless Chromium (Debian's /usr/bin/chromium through playwright-core), wait
// until it sets <body data-ready>, and save what it printed in <pre id="pose"> and a screenshot.
//
//   node web/tools/run_demo.mjs URL OUT.json SCREENSHOT.png [--chromium PATH]
//
// OUT.json: {"pose": <the page's #pose JSON>, "console": [messages of type error/warning],
//            "pageErrors": [uncaught exceptions], "failedRequests": [urls]}
// Exits non-zero with a one-line message if the page does not become ready in 60 s.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { HEADLESS_FLAGS } from './chromium.mjs';

function fail(message) {
  process.stderr.write(`run_demo: ${String(message).split('\n')[0]}\n`);
  process.exit(1);
}

// Offline, deterministic, and no state kept between runs (a fresh profile directory).

async function main() {
  const argv = process.argv.slice(2);
  let executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  const i = argv.indexOf('--chromium');
  if (i >= 0) [executablePath] = argv.splice(i, 2).slice(1);
  const [url, outPath, shotPath] = argv;
  if (argv.length !== 3) fail('usage: node run_demo.mjs URL OUT.json SCREENSHOT.png [--chromium PATH]');
  const { chromium } = await import('playwright-core');
  const profile = await mkdtemp(path.join(os.tmpdir(), 'pnpjax-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath, headless: true, args: HEADLESS_FLAGS, viewport: { width: 1100, height: 800 },
  });
  const report = { console: [], pageErrors: [], failedRequests: [] };
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => { if (['error', 'warning'].includes(m.type())) report.console.push(m.text()); });
    page.on('pageerror', (e) => report.pageErrors.push(String(e)));
    page.on('requestfailed', (r) => report.failedRequests.push(r.url()));
    await page.goto(url, { waitUntil: 'load', timeout: 60000 });
    await page.waitForSelector('body[data-ready]', { timeout: 60000 });
    report.pose = JSON.parse(await page.textContent('#pose'));
    await page.screenshot({ path: shotPath, fullPage: true });
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
  await writeFile(outPath, JSON.stringify(report));
}

main().catch((err) => fail(err && err.message ? err.message : err));
