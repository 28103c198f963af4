// The demo page (clients/web) in headless Chromium, driven by playwright-core
// against the system Chromium (never a downloaded browser). The page is served
// from its own port, so every REST call and the broadcasting auth are
// cross-origin requests to Parley, with CORS preflights, as in production.
//
// Without /usr/bin/chromium (or PARLEY_CHROMIUM) the test is skipped with a
// message, except under CI=true where it fails.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { chromium } from 'playwright-core';

import { PARLEY_BIN, useServer } from './helpers.js';
import { missingFiles, serveDemo } from '../../web/serve.mjs';

const CHROMIUM = process.env.PARLEY_CHROMIUM || '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
const UNDER_CI = Boolean(process.env.CI) && process.env.CI !== 'false';
const SKIP = !HAVE_CHROMIUM && !UNDER_CI
  ? `Chromium not found at ${CHROMIUM}: install it (Debian: apt-get install -y chromium) or set PARLEY_CHROMIUM; under CI this test fails instead`
  : false;
const SCREENSHOT = path.join(os.tmpdir(), 'parley-demo-page.png');
const PASSWORD = 'browser-pass-1';

const execFileP = promisify(execFile);

async function admin(dataDir, args) {
  let out;
  try {
    out = await execFileP(PARLEY_BIN, args, { env: { ...process.env, PARLEY_DATA_DIR: dataDir }, timeout: 20000 });
  } catch (err) {
    throw new Error(`parley ${args.join(' ')} failed: ${err.message}\nstdout: ${err.stdout}\nstderr: ${err.stderr}`);
  }
  return JSON.parse(out.stdout);
}

async function api(srv, method, p, { token, body } = {}, status = 200) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`http://${srv.host}:${srv.port}${p}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  assert.equal(res.status, status, `${method} ${p}: expected ${status}, got ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

describe('demo page (clients/web) in headless Chromium', () => {
  const server = useServer({ before, after });
  let demo = null;
  let browser = null;
  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (demo) await demo.close();
  });
  before(async () => {
    demo = await serveDemo({ host: '127.0.0.1', port: 0 });
  });

  it('log in through the form, receive a message live, unread count, send, read receipt', { timeout: 60000, skip: SKIP }, async () => {
    if (!HAVE_CHROMIUM) {
      throw new Error(`CI: Chromium is required for the browser test but ${CHROMIUM} does not exist (apt-get install -y chromium)`);
    }
    assert.deepEqual(missingFiles(), [], 'the page\'s files (run npm ci in clients/e2e)');
    const srv = server();
    const dir = srv.dataDir;
    const mk = (name) => admin(dir, ['users', 'create', '--name', name, '--email', `${name.toLowerCase()}@browser.test`, '--password', PASSWORD]);
    const A = await mk('Alice');
    const B = await mk('Bob');
    const M1 = await admin(dir, ['matters', 'create', '--title', 'Smith v. Jones']);
    const M2 = await admin(dir, ['matters', 'create', '--title', 'Acme merger']);
    for (const m of [M1, M2]) {
      for (const u of [A, B]) await admin(dir, ['matters', 'add-member', '--matter', String(m.id), '--user', String(u.id)]);
    }
    const tokenA = (await api(srv, 'POST', '/api/auth/login', { body: { email: A.email, password: PASSWORD } })).token;
    const tokenB = (await api(srv, 'POST', '/api/auth/login', { body: { email: B.email, password: PASSWORD } })).token;

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30000,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
    page.setDefaultTimeout(5000);
    const problems = [];
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console.error: ${msg.text()} (${msg.location().url})`); });
    page.on('requestfailed', (req) => problems.push(`requestfailed: ${req.method()} ${req.url()} ${req.failure() && req.failure().errorText}`));

    try {
      const parley = `http://${srv.host}:${srv.port}`;
      const pageUrl = `${demo.url}?server=${encodeURIComponent(parley)}&key=${encodeURIComponent(srv.key)}&email=${encodeURIComponent(B.email)}&matter=${M1.id}`;
      assert.notEqual(new URL(demo.url).origin, parley, 'the page must be cross-origin to Parley');
      await page.goto(pageUrl, { timeout: 10000 });
      assert.equal(await page.inputValue('#server'), parley);
      assert.equal(await page.inputValue('#key'), srv.key);
      assert.equal(await page.inputValue('#email'), B.email);

      // Log in through the form.
      await page.fill('#password', PASSWORD);
      await page.click('#login-button');
      await page.waitForSelector('#chat:not([hidden])', { timeout: 8000 }).catch(async (err) => {
        throw new Error(`${err.message}\nlogin error shown: ${await page.textContent('#login-error')}\n${problems.join('\n')}`);
      });
      assert.equal(await page.textContent('#me'), B.name);
      await page.waitForSelector('#status[data-state="connected"]', { timeout: 8000 });
      await page.waitForFunction((id) => {
        const ch = window.parleyDemo.state.echo.connector.pusher.channel(`private-user.${id}`);
        return ch && ch.subscribed;
      }, B.id, { timeout: 8000 });
      assert.deepEqual(await page.$$eval('#matters li', (lis) => lis.map((li) => [Number(li.dataset.matterId), li.textContent])),
        [[M2.id, `${M2.title}0`], [M1.id, `${M1.title}0`]], 'no messages yet: the newest matter first');
      assert.equal(await page.textContent('#unread-count'), '0');

      // Alice sends to the open matter over REST: the <li> appears within 5 s, as text (no HTML).
      const text1 = 'Hearing moved to <b>Tuesday</b> & 10:00';
      const m1 = (await api(srv, 'POST', '/api/messages/send', { token: tokenA, body: { message: text1, client_matter_id: M1.id } }, 201)).data;
      const li1 = await page.waitForSelector(`#messages li[data-message-id="${m1.id}"]`, { timeout: 5000 });
      assert.equal(await li1.textContent(), text1);
      assert.equal(await li1.evaluate((el) => el.children.length), 0, 'message text must not be parsed as HTML');
      // The page marks what it displays read: Bob's count for M1 goes back to 0 on the server.
      await waitUntil(async () => (await api(srv, 'GET', '/api/messages/unread-count', { token: tokenB })).matters[String(M1.id)] === 0,
        5000, 'the page to mark the displayed message read');

      // Alice sends to the other matter: not displayed, so the unread count shown goes to 1.
      const text2 = 'Draft of the merger agreement attached.';
      const m2 = (await api(srv, 'POST', '/api/messages/send', { token: tokenA, body: { message: text2, client_matter_id: M2.id } }, 201)).data;
      await page.waitForFunction(() => document.getElementById('unread-count').textContent === '1', null, { timeout: 5000 });
      assert.equal(await page.textContent(`#matters li[data-matter-id="${M2.id}"] .badge`), '1');
      assert.deepEqual(await api(srv, 'GET', '/api/messages/unread-count', { token: tokenB }),
        { user_id: B.id, unread_count: 1, matters: { [String(M1.id)]: 0, [String(M2.id)]: 1 } });
      assert.equal(await page.$(`#messages li[data-message-id="${m2.id}"]`), null, 'M2\'s message is not in M1\'s list');
      await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, '-unread.png') });

      // Opening that matter shows its history and reads it: the count goes back to 0.
      await page.click(`#matters li[data-matter-id="${M2.id}"] button`);
      const li2 = await page.waitForSelector(`#messages li[data-message-id="${m2.id}"]`, { timeout: 5000 });
      assert.equal(await li2.textContent(), text2);
      await page.waitForFunction(() => document.getElementById('unread-count').textContent === '0', null, { timeout: 5000 });
      assert.equal(await page.textContent('#matter-title'), M2.title);

      // Bob answers from the send box; Alice sees it over REST and reads it; the page shows the receipt.
      const reply = 'Thanks, reviewing it now.';
      await page.fill('#message-input', reply);
      await page.click('#send-button');
      const mine = await page.waitForSelector(`#messages li.mine:text-is("${reply}")`, { timeout: 5000 });
      const replyId = Number(await mine.getAttribute('data-message-id'));
      const history = await api(srv, 'GET', `/api/messages?client_matter_id=${M2.id}&after_id=${m2.id}`, { token: tokenA });
      assert.deepEqual(history.data.map((m) => [m.id, m.message, m.sender_id]), [[replyId, reply, B.id]]);
      assert.equal(await page.inputValue('#message-input'), '', 'the send box is cleared');
      await api(srv, 'PUT', `/api/messages/${replyId}/read`, { token: tokenA });
      await page.waitForSelector(`#messages li.mine.read[data-message-id="${replyId}"]`, { timeout: 5000 });

      await page.screenshot({ path: SCREENSHOT });
      assert.deepEqual(problems, [], 'no page errors, console errors or failed requests (CORS failures show here)');
    } catch (err) {
      await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, '-failed.png') }).catch(() => {});
      err.message += `\n--- browser problems ---\n${problems.join('\n') || '(none)'}\n--- parley output ---\n${srv.log().slice(-4000)}`;
      throw err;
    }
  });
});

async function waitUntil(check, ms, label) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 200)); // a REST poll: stay far below the 60/min rate limit
  }
}
