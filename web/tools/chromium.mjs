// Headless Debian chromium as this project starts it (tests, benchmarks): no sandbox (root), no
// GPU, and no background traffic — the machine's closed network refuses Chromium's own requests.
export const HEADLESS_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
