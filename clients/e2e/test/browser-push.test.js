// The demo chat's Web Push (clients/web: its service worker sw.js and the
// SDK's enableWebPush / setAppState) in headless Chromium, against a real
// `parley serve`, through playwright-core with the system Chromium.
//
// No push service is reachable here: Chromium's own (Google's, on the
// internet) cannot be, so the browser's pushManager.subscribe fails (headless
// Chromium answers "Registration failed - permission denied") and the page
// says so ("Notifications unavailable"). The test therefore stands in
// for the push service on both sides:
//  - toward Parley: a local HTTPS Web Push endpoint (Parley trusts its
//    certificate through SSL_CERT_FILE) with a subscription whose keys the
//    test holds, registered for Bob through POST /api/devices; it DECRYPTS
//    what Parley sends (RFC 8291, aes128gcm), as a push service's client would;
//  - toward the browser: it hands that decrypted payload to the demo's
//    service worker through the DevTools protocol
//    (ServiceWorker.deliverPushMessage), as the push service would deliver it.
// What is checked: Parley pushes once Bob's tab is hidden (the page tells it
// with setAppState on visibilitychange; headless Chromium shows every page as
// visible, so the test sets document.hidden and fires the event a hidden tab
// gets) and again once the tab is closed, and the service worker shows each
// push as a notification, with the matter's title and the sender's text.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

import { startParley, runAdmin as admin, chatOk as api, waitFor } from './helpers.js';
import { serveDemo } from '../../web/serve.mjs';

const CHROMIUM = process.env.PARLEY_CHROMIUM || '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
const UNDER_CI = Boolean(process.env.CI) && process.env.CI !== 'false';
const SKIP = !HAVE_CHROMIUM && !UNDER_CI ? `Chromium not found at ${CHROMIUM}: install it or set PARLEY_CHROMIUM` : false;
const PASSWORD = 'browser-push-1';

/** Polls an async condition every `interval` ms until it holds, for at most `ms`. */
async function until(cond, ms, label, interval = 50) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${label}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

const hkdf = (ikm, salt, info, n) => Buffer.from(crypto.hkdfSync('sha256', ikm, salt, info, n));

/** Opens an aes128gcm Web Push body with the subscription's key and auth secret (RFC 8291). */
function decrypt(body, ecdh, auth) {
  const salt = body.subarray(0, 16);
  const idlen = body[20];
  const asPub = body.subarray(21, 21 + idlen);
  const ct = body.subarray(21 + idlen);
  const secret = ecdh.computeSecret(asPub);
  const ikm = hkdf(secret, auth, Buffer.concat([Buffer.from('WebPush: info\0'), ecdh.getPublicKey(), asPub]), 32);
  const cek = hkdf(ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16);
  const nonce = hkdf(ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12);
  const d = crypto.createDecipheriv('aes-128-gcm', cek, nonce);
  d.setAuthTag(ct.subarray(ct.length - 16));
  let plain = Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]);
  let end = plain.length;
  while (end > 0 && plain[end - 1] === 0) end--;
  assert.equal(plain[end - 1], 2, 'the last record delimiter');
  plain = plain.subarray(0, end - 1);
  return JSON.parse(plain.toString('utf8'));
}

/** A local HTTPS Web Push endpoint with one subscription; records what it decrypts. */
async function pushService(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = crypto.randomBytes(16);
  const received = [];
  const problems = [];
  const srv = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      try {
        if (!/^vapid t=[^,]+, k=/.test(req.headers.authorization || '')) throw new Error(`no VAPID authorization: ${req.headers.authorization}`);
        received.push(decrypt(Buffer.concat(chunks), ecdh, auth));
        res.writeHead(201).end();
      } catch (err) {
        problems.push(err.message);
        res.writeHead(400).end();
      }
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const b64 = (b) => b.toString('base64url');
  return {
    cert, received, problems,
    subscription: { endpoint: `https://127.0.0.1:${srv.address().port}/push/bob`, keys: { p256dh: b64(ecdh.getPublicKey()), auth: b64(auth) } },
    close: () => new Promise((r) => srv.close(r)),
  };
}

describe('demo chat: Web Push in headless Chromium', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-browser-push-'));
  let service;
  let server;
  let demo;
  let browser;

  before(async () => {
    if (SKIP) return;
    service = await pushService(dataDir);
    server = await startParley({ env: {
      PARLEY_DATA_DIR: dataDir, PARLEY_API_RATE_LIMIT: '1000', PARLEY_PUSH_WINDOW: '1ms', PARLEY_PUSH_CONCURRENCY: '1', SSL_CERT_FILE: service.cert,
    } });
    demo = await serveDemo({ host: '127.0.0.1', port: 0 });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 30000,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  });
  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (demo) await demo.close();
    if (server) await server.stop();
    if (service) await service.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('pushes when the tab is hidden and when it is closed; the service worker shows them', { timeout: 120000, skip: SKIP }, async () => {
    if (!HAVE_CHROMIUM) throw new Error(`CI: Chromium is required but ${CHROMIUM} does not exist`);
    const mk = (name) => admin(dataDir, ['users', 'create', '--name', name, '--email', `${name.toLowerCase()}@browser-push.test`, '--password', PASSWORD]);
    const A = await mk('Alice');
    const B = await mk('Bob');
    const M = await admin(dataDir, ['matters', 'create', '--title', 'Web matter', '--members', `${A.id},${B.id}`]);
    const tok = {};
    for (const u of [A, B]) tok[u.id] = (await api(server.port, 'POST', '/api/auth/login', { body: { email: u.email, password: PASSWORD } })).token;
    const origin = new URL(demo.url).origin;

    const context = await browser.newContext();
    await context.grantPermissions(['notifications'], { origin });
    const page = await context.newPage();
    const q = new URLSearchParams({ server: `http://127.0.0.1:${server.port}`, key: server.key, email: B.email });
    await page.goto(`${demo.url}?${q}`);
    await page.fill('#password', PASSWORD);
    await page.click('#login-button');
    await page.waitForSelector('#status[data-state="connected"]');
    // The page registered its service worker and tried to subscribe: here no push service answers.
    await page.waitForFunction(() => document.querySelector('#push-status').textContent !== '', null, { timeout: 30000 });
    const status = await page.textContent('#push-status');
    const worker = context.serviceWorkers()[0] || await context.waitForEvent('serviceworker');
    assert.match(worker.url(), /\/sw\.js$/);
    console.log(`# the page's own Web Push subscription: ${status}`);

    // The stand-in subscription, for Bob; the VAPID key the page would subscribe with is served.
    assert.ok((await api(server.port, 'GET', '/api/push/vapid-public-key')).public_key);
    await api(server.port, 'POST', '/api/devices', { token: tok[B.id], body: { platform: 'webpush', subscription: service.subscription } }, 201);

    // A second page of the demo's origin carries the DevTools session (it outlives Bob's tab).
    const helper = await context.newPage();
    await helper.goto(`${demo.url}sw.js`);
    const cdp = await context.newCDPSession(helper);
    const registrations = [];
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => registrations.push(...e.registrations));
    await cdp.send('ServiceWorker.enable');
    await waitFor(() => registrations.some((r) => r.scopeURL.startsWith(origin)), 10000, 'the service worker registration');
    const { registrationId } = registrations.find((r) => r.scopeURL.startsWith(origin));
    const notifications = () => worker.evaluate(() => self.registration.getNotifications().then((ns) => ns.map((n) => ({ title: n.title, body: n.body, tag: n.tag }))));

    /** Alice sends until a push reaches the service (Bob's new state may still be on its way), then hands it to the worker. */
    const pushOnce = async (text) => {
      const before = service.received.length;
      let sent = 0;
      await until(async () => {
        if (service.received.length > before) return true;
        await api(server.port, 'POST', '/api/messages/send', { token: tok[A.id], body: { message: `${text} ${++sent}`, client_matter_id: M.id } }, 201);
        return false;
      }, 30000, `a push for "${text}"`, 1000);
      const p = service.received.at(-1);
      assert.equal(p.title, 'Web matter');
      assert.match(p.body, new RegExp(`^Alice: ${text} \\d+$`));
      await cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data: JSON.stringify(p) });
      await until(async () => (await notifications()).some((n) => n.body === p.body), 10000, `the notification "${p.body}"`);
      return p;
    };

    // Visible: no push. Bob's unread count is answered by his counter after it handled the
    // message (its push decision made); pushes leave one at a time, in order.
    const visible = 'while the tab is visible';
    await api(server.port, 'POST', '/api/messages/send', { token: tok[A.id], body: { message: visible, client_matter_id: M.id } }, 201);
    await api(server.port, 'GET', '/api/messages/unread-count', { token: tok[B.id] });

    // Hidden: the page tells Parley it is in the background.
    await page.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    const hidden = await pushOnce('while the tab is hidden');
    assert.ok(!service.received.some((p) => p.body === `Alice: ${visible}`), 'no push while the tab was visible');
    assert.equal((await notifications()).find((n) => n.body === hidden.body).tag, `matter-${M.id}`);

    // Closed: no socket at all.
    await page.close();
    await pushOnce('after the tab was closed');
    assert.deepEqual(service.problems, []);
  });
});
