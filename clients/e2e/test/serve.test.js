// The demo's static server (clients/web/serve.mjs) run as a command, as the
// README's "Try it" runs it: it prints the URL to open, and a port that is
// taken is said in one line (which port, how to choose another), not a stack
// trace. browser.test.js uses its serveDemo() directly.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

import { E2E_DIR } from './helpers.js';
import { missingFiles } from '../../web/serve.mjs';

const SERVE = path.resolve(E2E_DIR, '../web/serve.mjs');
const SKIP = missingFiles().length ? 'run `npm ci` in clients/e2e first (the page\'s npm builds are missing)' : false;

/** Runs serve.mjs with args; resolves {code, stdout, stderr} once it exits (killed after ms). */
function run(args, { ms = 10000, until } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SERVE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.stdout.on('data', (d) => {
      stdout += d;
      if (until && until(stdout)) {
        clearTimeout(timer);
        resolve({ child, stdout, stderr, running: true });
      }
    });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, running: false });
    });
  });
}

/** A listener on 127.0.0.1 holding a free port. */
function occupy() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer((s) => s.destroy());
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

describe('demo server (clients/web/serve.mjs) as a command', () => {
  const cleanup = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f();
  });

  it('a taken port is said in one line, with how to choose another', { skip: SKIP, timeout: 20000 }, async () => {
    const holder = await occupy();
    cleanup.push(() => new Promise((r) => holder.close(() => r())));
    const port = holder.address().port;

    const r = await run(['--port', String(port), '--host', '127.0.0.1', '--key', 'key-1', '--server', 'http://127.0.0.1:1']);
    assert.equal(r.running, false);
    assert.equal(r.signal, null, `serve.mjs did not exit by itself: ${r.stderr}`);
    assert.equal(r.code, 1, `exit code; stderr: ${r.stderr}`);
    assert.equal(r.stdout, '', 'nothing on stdout (no URL for a server that is not running)');
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
    const [line] = lines;
    assert.match(line, new RegExp(`\\bport ${port}\\b`), 'names the port');
    assert.match(line, /in use/, 'says the port is taken');
    assert.match(line, /--port/, 'says how to choose another');
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
    assert.doesNotMatch(r.stderr, /node:net|UVException|errno/, 'no Node internals');
  });

  it('a port that is not a number is refused in one line', { skip: SKIP, timeout: 20000 }, async () => {
    const r = await run(['--port', 'abc', '--key', 'key-1']);
    assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
    assert.match(lines[0], /--port abc/);
  });

  it('a free port: prints the URL to open, which serves the page', { skip: SKIP, timeout: 20000 }, async () => {
    const server = 'http://127.0.0.1:18080';
    const r = await run(['--port', '0', '--host', '127.0.0.1', '--key', 'key-1', '--server', server], {
      until: (out) => out.includes('\n'),
    });
    assert.equal(r.running, true, `serve.mjs exited: code ${r.code}, stderr: ${r.stderr}`);
    cleanup.push(() => new Promise((res) => {
      r.child.once('exit', () => res());
      r.child.kill('SIGTERM');
    }));
    const m = r.stdout.match(/^Parley demo chat: (http:\/\/127\.0\.0\.1:\d+\/)\?(\S+)$/m);
    assert.ok(m, `the URL line, got: ${r.stdout}`);
    const q = new URLSearchParams(m[2]);
    assert.equal(q.get('server'), server);
    assert.equal(q.get('key'), 'key-1');
    const res = await fetch(m[1]);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /text\/html/);
    await res.arrayBuffer();
  });
});
