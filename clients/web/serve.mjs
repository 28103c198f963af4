#!/usr/bin/env node
// A tiny static server for the demo page: index.html, app.js and the two
// browser builds it loads, taken from clients/e2e/node_modules (run
// `npm ci` there first). Nothing else is served.
//
//   node clients/web/serve.mjs [--port 8000] [--host 127.0.0.1]
//
// then open the printed URL, adding ?server=http://127.0.0.1:8080&key=APP_KEY.
// The page talks to Parley cross-origin; Parley's chat API answers CORS for
// the app's allowed_origins (all origins when none are configured).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.PARLEY_WEB_NODE_MODULES || path.resolve(here, '../e2e/node_modules');

const JS = 'text/javascript; charset=utf-8';
export const FILES = {
  '/': [path.join(here, 'index.html'), 'text/html; charset=utf-8'],
  '/index.html': [path.join(here, 'index.html'), 'text/html; charset=utf-8'],
  '/app.js': [path.join(here, 'app.js'), JS],
  '/vendor/pusher.min.js': [path.join(nodeModules, 'pusher-js/dist/web/pusher.min.js'), JS],
  '/vendor/echo.iife.js': [path.join(nodeModules, 'laravel-echo/dist/echo.iife.js'), JS],
};

/** Files the page needs that are missing (the two libraries before `npm ci`). */
export function missingFiles() {
  return Object.values(FILES).map(([f]) => f).filter((f) => !fs.existsSync(f));
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
    fs.readFile(entry[0], (err, body) => {
      if (err) {
        res.writeHead(404, { 'Content-Type': 'text/plain' })
          .end(`${entry[0]} is missing: run \`npm ci\` in clients/e2e\n`);
        return;
      }
      res.writeHead(200, { 'Content-Type': entry[1], 'Content-Length': body.length, 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
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
  const { url } = await serveDemo({ host: arg('--host', '127.0.0.1'), port: Number(arg('--port', '8000')) });
  console.log(`Parley demo page: ${url}?server=http://127.0.0.1:8080&key=YOUR_APP_KEY`);
}
