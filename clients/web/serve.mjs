#!/usr/bin/env node
// Serves the demo chat next to a running `parley serve`:
//
//   node clients/web/serve.mjs [--port 8000] [--host 127.0.0.1]
//                              [--server http://127.0.0.1:8080] [--data-dir ./data]
//
// and prints the URL to open. A port that is taken is said in one line on
// stderr (exit 1), with how to choose another. The page is an ES module app on the RealtimeChat
// SDK (clients/js); an import map in index.html names the three modules it
// imports, and this server serves exactly those, with no build step:
//   /sdk/index.js            clients/js/index.js
//   /vendor/laravel-echo.js  laravel-echo's ES module build
//   /vendor/pusher-js.js     a two-line module exporting pusher-js's browser build
// The npm packages come from clients/e2e/node_modules (run `npm ci` there
// first) or from PARLEY_WEB_NODE_MODULES. Nothing else is served.
//
// The app key is taken from --key, else from PARLEY_APP_KEY, else from the
// credentials `parley serve` generated in --data-dir (default ./data), and put
// in the printed URL; the page talks to Parley cross-origin (Parley's chat API
// answers CORS for the app's allowed_origins, every origin when none is set).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.PARLEY_WEB_NODE_MODULES || path.resolve(here, '../e2e/node_modules');
const sdkDir = path.resolve(here, '../js');

const JS = 'text/javascript; charset=utf-8';
// pusher-js ships no ES module build for browsers; its UMD build, loaded as a
// module, sets self.Pusher (its wrapper's root is `self`).
const PUSHER_SHIM = "import './pusher.umd.js';\nexport default self.Pusher;\n";

export const FILES = {
  '/': [path.join(here, 'index.html'), 'text/html; charset=utf-8'],
  '/index.html': [path.join(here, 'index.html'), 'text/html; charset=utf-8'],
  '/app.js': [path.join(here, 'app.js'), JS],
  '/style.css': [path.join(here, 'style.css'), 'text/css; charset=utf-8'],
  '/sw.js': [path.join(here, 'sw.js'), JS],
  '/sdk/index.js': [path.join(sdkDir, 'index.js'), JS],
  '/vendor/laravel-echo.js': [path.join(nodeModules, 'laravel-echo/dist/echo.js'), JS],
  '/vendor/pusher.umd.js': [path.join(nodeModules, 'pusher-js/dist/web/pusher.min.js'), JS],
  '/vendor/pusher-js.js': [null, JS, PUSHER_SHIM],
};

/** Files the page needs that are missing (the npm builds before `npm ci`). */
export function missingFiles() {
  return Object.values(FILES).map(([f]) => f).filter((f) => f && !fs.existsSync(f));
}

/** The app key `parley serve` generated in dataDir, or null. */
export function generatedKey(dataDir) {
  try {
    const c = JSON.parse(fs.readFileSync(path.join(dataDir, 'credentials.json'), 'utf8'));
    return c.key || (Array.isArray(c.apps) && c.apps[0] && c.apps[0].key) || null;
  } catch {
    return null;
  }
}

/** Starts the server; resolves {url, port, close()}. port 0 picks a free one. */
export function serveDemo({ host = '127.0.0.1', port = 0 } = {}) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const entry = FILES[url.pathname];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (!entry) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    const send = (body) => {
      res.writeHead(200, { 'Content-Type': entry[1], 'Content-Length': body.length, 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (!entry[0]) {
      send(Buffer.from(entry[2]));
      return;
    }
    fs.readFile(entry[0], (err, body) => {
      if (err) {
        res.writeHead(404, { 'Content-Type': 'text/plain' })
          .end(`${entry[0]} is missing: run \`npm ci\` in clients/e2e\n`);
        return;
      }
      send(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const actual = server.address().port;
      resolve({
        port: actual,
        url: `http://${host.includes(':') ? `[${host}]` : host}:${actual}/`,
        close: () => new Promise((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
      });
    });
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const arg = (name, def) => {
    const i = process.argv.indexOf(name);
    return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
  };
  const missing = missingFiles();
  if (missing.length) {
    console.error(`missing ${missing.join(', ')}\nrun \`npm ci\` in clients/e2e first`);
    process.exit(1);
  }
  const parley = arg('--server', process.env.PARLEY_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
  const key = arg('--key', process.env.PARLEY_APP_KEY || generatedKey(arg('--data-dir', process.env.PARLEY_DATA_DIR || './data')));
  const host = arg('--host', '127.0.0.1');
  const portArg = arg('--port', '8000');
  const port = Number(portArg);
  if (!/^\d+$/.test(portArg) || port > 65535) {
    console.error(`--port ${portArg} is not a port number (0-65535; 0 picks a free one)`);
    process.exit(2);
  }
  let url;
  try {
    ({ url } = await serveDemo({ host, port }));
  } catch (err) {
    // One line, not a stack trace: what is wrong and how to choose another port.
    console.error(err.code === 'EADDRINUSE'
      ? `port ${port} on ${host} is already in use: choose another with --port, e.g. --port ${port === 65535 ? 8001 : port + 1} (--port 0 picks a free one)`
      : `cannot listen on ${host} port ${port}: ${err.message} (choose another port with --port)`);
    process.exit(1);
  }
  const q = new URLSearchParams({ server: parley });
  if (key) q.set('key', key);
  console.log(`Parley demo chat: ${url}?${q}`);
  if (!key) console.log('(no app key found: pass --key, set PARLEY_APP_KEY, or run this from the directory parley serve runs in)');
}
