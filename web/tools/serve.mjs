#!/usr/bin/env node
// A static file server for the demo, on 127.0.0.1 only (never on other interfaces).
//
//   node web/tools/serve.mjs [--port 8000] [--root DIR] [--mount /models=DIR ...]
//
// Serves --root (default: web/) at / and each --mount directory under its URL prefix, so the
// demo at /demo/ finds TF.js at /node_modules/... and exported models at /models/... .
// --port 0 picks a free port. The first line on stdout is "serving http://127.0.0.1:PORT/".
// Paths that leave a served directory (.., symlinks out) get 404.

import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.bin': 'application/octet-stream',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.md': 'text/plain; charset=utf-8',
};

function fail(message) {
  process.stderr.write(`serve: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { port: 8000, root: path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'), mounts: [] };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) fail(`${flag} needs a value`);
    if (flag === '--port') args.port = Number(value);
    else if (flag === '--root') args.root = path.resolve(value);
    else if (flag === '--mount') {
      const [prefix, dir] = value.split(/=(.*)/s);
      if (!prefix.startsWith('/') || !dir) fail(`--mount wants /PREFIX=DIR, got ${value}`);
      args.mounts.push([prefix.replace(/\/+$/, ''), path.resolve(dir)]);
    } else fail(`unknown argument ${flag}`);
    i++;
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) fail('--port must be 0..65535');
  // Longest prefix first, so /models/x wins over /.
  args.mounts.sort((a, b) => b[0].length - a[0].length);
  return args;
}

/** The file for a URL path, or null if it is outside every served directory or missing. */
async function resolveFile(args, urlPath) {
  let rel = decodeURIComponent(urlPath);
  let base = args.root;
  for (const [prefix, dir] of args.mounts) {
    if (rel === prefix || rel.startsWith(prefix + '/')) {
      base = dir;
      rel = rel.slice(prefix.length);
      break;
    }
  }
  if (rel.includes('\0') || rel.split('/').includes('..')) return null;
  try {
    const root = await realpath(base);
    let target = await realpath(path.join(root, rel));
    if ((await stat(target)).isDirectory()) target = await realpath(path.join(target, 'index.html'));
    if (target !== root && !target.startsWith(root + path.sep)) return null;
    return (await stat(target)).isFile() ? target : null;
  } catch {
    return null;
  }
}

const args = parseArgs(process.argv.slice(2));
const server = createServer(async (req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405).end();
    return;
  }
  let file = null;
  try {
    file = await resolveFile(args, url.pathname);
  } catch {
    file = null;  // e.g. malformed percent-encoding
  }
  if (file === null) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  res.writeHead(200, {
    'content-type': TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
    'cache-control': 'no-store',
  });
  if (req.method === 'HEAD') res.end();
  else createReadStream(file).pipe(res);
});
server.on('error', (err) => fail(err.message));
server.listen(args.port, '127.0.0.1', () => {
  process.stdout.write(`serving http://127.0.0.1:${server.address().port}/\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
