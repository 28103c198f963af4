// TLS built in: `parley serve --tls-cert --tls-key` (here PARLEY_TLS_CERT/KEY)
// serves wss:// and the HTTP API over https on one port. pusher-js connects
// with forceTLS, trusting a self-signed test certificate the standard Node
// way (NODE_EXTRA_CA_CERTS, read at process start, hence a child process);
// the `pusher` server SDK publishes with useTLS through an https.Agent that
// trusts the same certificate.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

import { E2E_DIR, PusherServer, newId, show, startParley, waitFor, within } from './helpers.js';

// The pusher-js client runs in a process that trusts the test CA.
const CLIENT = path.join(E2E_DIR, 'fixtures', 'tls-client.mjs');

function makeCert(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { cert, key, pem: fs.readFileSync(cert, 'utf8') };
}

describe('TLS', () => {
  let dir;
  let tls;
  let server;
  let client;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-tls-'));
    tls = makeCert(dir);
    server = await startParley({ env: { PARLEY_TLS_CERT: tls.cert, PARLEY_TLS_KEY: tls.key }, tlsCA: tls.pem });
  });
  after(async () => {
    if (client && client.exitCode === null) client.kill('SIGKILL');
    if (server) await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('pusher-js with forceTLS connects over wss:// and receives what the pusher SDK publishes over https', { timeout: 30000 }, async () => {
    const channel = newId('tls-');
    try {
      client = spawn(process.execPath, [CLIENT, server.key, String(server.port), channel], {
        env: { ...process.env, NODE_EXTRA_CA_CERTS: tls.cert }, stdio: ['pipe', 'pipe', 'pipe'],
      });
      const seen = [];
      let stderr = '';
      client.stderr.on('data', (c) => { stderr += c; });
      readline.createInterface({ input: client.stdout }).on('line', (l) => {
        try { seen.push(JSON.parse(l)); } catch { seen.push({ raw: l }); }
      });
      const wait = async (fn, label) => {
        try {
          return await waitFor(fn, 10000, label);
        } catch (err) {
          throw new Error(`${err.message}: ${why()}`);
        }
      };
      const why = () => `client saw ${show(seen)}; stderr ${stderr}\n--- parley ---\n${server.log().slice(-3000)}`;
      await wait(() => seen.find((o) => o.subscribed === channel), 'subscription over wss://');
      assert.ok(seen.some((o) => o.state === 'connected'), why());

      const sdk = new PusherServer({
        appId: server.appId, key: server.key, secret: server.secret,
        host: '127.0.0.1', port: String(server.port), useTLS: true,
        agent: new https.Agent({ ca: tls.pem, keepAlive: false }),
      });
      const res = await sdk.trigger(channel, 'greeting', { over: 'https' });
      assert.equal(res.status, 200);
      await wait(() => seen.find((o) => o.event === 'greeting'), 'the event over wss://');
      assert.deepEqual(seen.find((o) => o.event === 'greeting').data, { over: 'https' });
      assert.ok(!seen.some((o) => o.error), `errors on the TLS client: ${why()}`);
    } finally {
      client.stdin.end();
      if (client.exitCode === null) await within(new Promise((r) => client.once('exit', r)), 5000);
    }
  });
});
