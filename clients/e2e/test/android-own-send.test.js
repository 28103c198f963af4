// The Android client (clients/android, compiled with javac --release 8 and driven on the JVM by its
// RealtimeChatDriver) against a real `parley serve`:
//
//   - an own send the client learns of before sendMessage has its answer — a catch-up (Bob's next
//     message names it as previous_id) fetches it — reaches the app once, as onMessageSent, in id
//     order; the answer adds nothing. Alice's REST goes through an HTTP proxy in this test that
//     lets the server store the send and holds the answer until the test lets it go. The same for
//     a send that threw (every answer lost) and that the app repeats with the same
//     client_message_id after the catch-up brought it;
//   - "shown" means the app has been given the message: its callback has run (or a fetch method
//     or sendMessage returned it). With the callback executor held busy (a busy UI thread), the
//     client has taken three messages in but the app has not been given them: markMatterRead stays
//     at the last message whose callback ran, markAsRead of the others throws NotShownException;
//     once the callbacks ran both go through. A markAsRead made by the callback itself, on the
//     callback thread, is for a message being shown and goes through.
//
// Nothing is asserted absent after a fixed wait: a marker message comes last, and once the client
// delivered it everything before it is final (a matter's messages are delivered in id order).
// That the client has taken Bob's messages in while its callbacks are held is known from a raw
// listener on the same channel: Alice edits the last message, and the Pusher SDK hands a
// channel's events to listeners one after the other on its event thread, so the raw
// MessageUpdated comes after the client's own listener took the three MessageSent.
//
// Needs what the other Java tests need (see java-helpers.js).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { adminMatter, adminUsers, loginTokens, show, startParley, waitFor, chatOk as ok } from './helpers.js';
import {
  ANDROID_DRIVER, MISSING, SKIP, compileAndroid, driverRequests, requireJava, runJava,
} from './java-helpers.js';

const PASSWORD = 'android-own-send-1';

/**
 * An HTTP proxy in front of the REST API. Every request is forwarded; POST /api/messages/send is
 * treated as `ctl.action(index)` says: 'pass'; 'hold' (the server stores it, the answer waits for
 * `ctl.sends[i].release()`); 'lose' (stored, then the connection is cut: no answer).
 */
async function restProxy(targetPort) {
  const ctl = { sends: [], action: () => 'pass' };
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    let entry = null;
    if (req.method === 'POST' && req.url.split('?')[0].endsWith('/messages/send')) {
      entry = { request: JSON.parse(body.toString()), action: ctl.action(ctl.sends.length), answer: null, done: false };
      entry.held = new Promise((r) => {
        entry.release = r;
      });
      ctl.sends.push(entry);
    }
    const headers = { ...req.headers };
    for (const h of ['host', 'connection', 'content-length', 'transfer-encoding']) delete headers[h];
    try {
      const up = await fetch(`http://127.0.0.1:${targetPort}${req.url}`, {
        method: req.method, headers, body: body.length ? body : undefined, signal: AbortSignal.timeout(10000),
      });
      const text = await up.text();
      if (entry) {
        entry.status = up.status;
        entry.answer = JSON.parse(text);
        if (entry.action === 'hold') await entry.held;
        entry.done = true;
        if (entry.action === 'lose') {
          req.socket.destroy(); // stored upstream; the answer is lost
          return;
        }
      }
      res.writeHead(up.status, { 'Content-Type': up.headers.get('content-type') || 'application/json' });
      res.end(text);
    } catch (err) {
      res.writeHead(502, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ message: `proxy: ${err.message}` }));
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  ctl.port = server.address().port;
  ctl.stop = () => new Promise((r) => {
    for (const s of ctl.sends) s.release();
    server.close(() => r());
    server.closeAllConnections();
  });
  return ctl;
}

describe('Android client: own sends once, and "shown" is what the app was given', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-android-own-send-'));
  let classDir = null;
  let compileError = null;
  let server = null;
  let proxy = null;
  let java = null;
  let A;
  let B;
  let tok = {};
  let matterSeq = 0;

  before(async () => {
    if (MISSING.length) return;
    ({ classDir, compileError } = await compileAndroid());
    if (compileError) return;
    server = await startParley({ env: { PARLEY_DATA_DIR: dataDir, PARLEY_API_RATE_LIMIT: '0' } });
    proxy = await restProxy(server.port);
    [A, B] = await adminUsers(dataDir, 'android-own-send.test', PASSWORD, ['Alice', 'Bob']);
    tok = await loginTokens(server.port, [A, B], PASSWORD);
    java = runJava(classDir, ANDROID_DRIVER);
  });
  after(async () => {
    if (java) await java.quit();
    if (proxy) await proxy.stop();
    if (server) await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
    if (classDir) fs.rmSync(classDir, { recursive: true, force: true });
  });

  const matter = (title) => adminMatter(dataDir, `${title} ${++matterSeq}`, [A, B]);
  /** `who` sends through REST, straight to the server. */
  const sendAs = async (who, m, text) => (await ok(server.port, 'POST', '/api/messages/send', {
    token: tok[who.id], body: { message: text, client_matter_id: m.id },
  }, 201)).data;
  const asSender = async (who, m) => (await ok(server.port, 'GET', `/api/messages?client_matter_id=${m.id}&limit=100`, { token: tok[who.id] })).data;

  const { request, call, value } = driverRequests(() => java, 'o');
  const of = (client, type) => (l) => l.client === client && l.type === type;
  /** The message callbacks of `client` for matter `m`, in order: [callback, id]. */
  const calls = (client, m) => java.lines
    .filter((l) => l.client === client && (l.type === 'messageReceived' || l.type === 'messageSent') && l.message.client_matter_id === m.id)
    .map((l) => [l.type === 'messageReceived' ? 'received' : 'sent', l.message.id]);
  const delivered = (client, id) => java.expect((l) => l.client === client && (l.type === 'messageReceived' || l.type === 'messageSent')
    && l.message.id === id, 20000, `${client}: message ${id}`);

  /** A new client of `who` following matter `m` (its position known); REST through `apiBase`. */
  const newClient = async (client, who, m, { apiBase = `http://127.0.0.1:${server.port}/api`, ...extra } = {}) => {
    await value(client, 'new', {
      host: '127.0.0.1', port: server.port, key: server.key, token: tok[who.id], userId: who.id, userName: who.name,
      apiBaseUrl: apiBase, ...extra,
    });
    const mark = java.lines.length;
    java.send({ cmd: 'subscribeMatter', client, matter: m.id });
    await java.expect((l) => java.lines.indexOf(l) >= mark && of(client, 'subscribed')(l) && l.channel === `private-matter.${m.id}`,
      20000, `${client} subscribed to matter ${m.id}`, of(client, 'subscriptionError'));
    await waitFor(async () => (await value(client, 'shownUpTo', { matter: m.id })) !== null, 10000, `${client}: the position of ${m.id}`);
  };
  /** Bob's marker; resolves once `client` delivered it. */
  const marker = async (client, m) => {
    const msg = await sendAs(B, m, `marker ${Date.now()}`);
    await delivered(client, msg.id);
    return msg;
  };
  const noErrors = (client) => assert.deepEqual(java.lines.filter(of(client, 'error')), [], `${client}: no errors`);

  const T = { timeout: 90000, skip: SKIP };
  const prepare = () => {
    requireJava();
    if (compileError) throw compileError;
  };
  const report = (err) => {
    err.message += `\n--- Android driver output ---\n${java && java.report()}`;
    return err;
  };

  it('Bob\'s next message shows the hole while Alice\'s send waits for its answer: her message is onMessageSent once, in id order', T, async () => {
    prepare();
    try {
      const M = await matter('Hole');
      await newClient('alice1', A, M, { apiBase: `http://127.0.0.1:${proxy.port}/api` });
      const n = proxy.sends.length;
      proxy.action = () => 'hold';
      const send = request('alice1', 'send', { matter: M.id, message: 'mine, answer held' });
      const mine = (await waitFor(() => proxy.sends[n] && proxy.sends[n].answer, 10000, 'Alice\'s send stored')).data;
      const b1 = await sendAs(B, M, 'b1');
      assert.equal(b1.previous_id, mine.id);
      await delivered('alice1', b1.id);
      proxy.action = () => 'pass';
      proxy.sends[n].release();
      const r = await send.result();
      assert.equal(r.ok, true, show(r));
      assert.equal(r.value.id, mine.id);
      const last = await marker('alice1', M);
      assert.deepEqual(calls('alice1', M), [['sent', mine.id], ['received', b1.id], ['received', last.id]],
        'each message once, in id order; hers as onMessageSent');
      noErrors('alice1');
      java.send({ cmd: 'close', client: 'alice1' });
    } catch (err) {
      throw report(err);
    }
  });

  it('a send that threw (answers lost) is stored: the catch-up gives it as onMessageSent, the app\'s repeat with the same key adds nothing', T, async () => {
    prepare();
    try {
      const M = await matter('Thrown');
      await newClient('alice2', A, M, { apiBase: `http://127.0.0.1:${proxy.port}/api`, sendRetries: 1 });
      const n = proxy.sends.length;
      proxy.action = () => 'lose';
      const cid = `android-own-send-${process.pid}-${Date.now()}`;
      const r1 = await call('alice2', 'send', { matter: M.id, message: 'mine, every answer lost', clientMessageId: cid });
      assert.equal(r1.ok, false, `no answer: sendMessage throws (${show(r1)})`);
      const mine = proxy.sends[n].answer.data;
      proxy.action = () => 'pass';
      const b1 = await sendAs(B, M, 'b1');
      assert.equal(b1.previous_id, mine.id);
      await delivered('alice2', b1.id);
      const r2 = await value('alice2', 'send', { matter: M.id, message: 'mine, every answer lost', clientMessageId: cid });
      assert.equal(r2.id, mine.id, 'the repeat answers the stored message');
      const last = await marker('alice2', M);
      assert.deepEqual(calls('alice2', M), [['sent', mine.id], ['received', b1.id], ['received', last.id]]);
      java.send({ cmd: 'close', client: 'alice2' });
    } catch (err) {
      throw report(err);
    }
  });

  it('callbacks held by a busy executor: the read marks cover only what the callbacks delivered', T, async () => {
    prepare();
    try {
      const M = await matter('Busy');
      await newClient('bob3', B, M, { busyCallbacks: true });
      await value('bob3', 'rawBind', { channel: `private-matter.${M.id}`, event: 'App\\Events\\MessageUpdated' });
      const first = await sendAs(A, M, 'shown');
      await delivered('bob3', first.id);

      await value('bob3', 'busy');
      const unseen = [await sendAs(A, M, 'u1'), await sendAs(A, M, 'u2'), await sendAs(A, M, 'u3')];
      const last = unseen[2];
      await ok(server.port, 'PUT', `/api/messages/${last.id}`, { token: tok[A.id], body: { message: 'u3 (edited)' } });
      await java.expect((l) => of('bob3', 'raw')(l) && JSON.parse(l.data).message.id === last.id, 20000,
        'the raw MessageUpdated after the three MessageSent');
      assert.deepEqual(calls('bob3', M), [['received', first.id]], 'the app has been given none of them yet');

      const res = await value('bob3', 'readUpTo', { matter: M.id, upTo: Number.MAX_SAFE_INTEGER });
      assert.equal(res.up_to_id, first.id, `only up to the last message the app was given: ${show(res)}`);
      assert.equal(res.clamped, true);
      assert.equal(await value('bob3', 'shownUpTo', { matter: M.id }), first.id);
      const refused = await call('bob3', 'read', { message: unseen[0].id });
      assert.equal(refused.ok, false);
      assert.match(refused.error, /NotShownException/, show(refused));
      let state = await asSender(A, M);
      for (const u of unseen) {
        assert.deepEqual(state.find((x) => x.id === u.id).read_by, [], `${u.id}: not read while its callback had not run`);
      }

      await value('bob3', 'idle');
      for (const u of unseen) await delivered('bob3', u.id);
      assert.equal((await value('bob3', 'read', { message: unseen[0].id })).message_id, unseen[0].id);
      const res2 = await value('bob3', 'readUpTo', { matter: M.id, upTo: Number.MAX_SAFE_INTEGER });
      assert.equal(res2.up_to_id, last.id, show(res2));
      state = await asSender(A, M);
      for (const u of unseen) assert.ok(state.find((x) => x.id === u.id).read_by.some((x) => x.user_id === B.id), `${u.id} read`);

      // His own send counts as shown once sendMessage returned, its onMessageSent still held.
      await value('bob3', 'busy');
      const own = await value('bob3', 'send', { matter: M.id, message: 'from Bob, callbacks held' });
      assert.equal(await value('bob3', 'shownUpTo', { matter: M.id }), own.id);
      await value('bob3', 'idle');
      await delivered('bob3', own.id);
      const end = await marker('bob3', M);
      assert.deepEqual(calls('bob3', M), [['received', first.id], ...unseen.map((u) => ['received', u.id]), ['sent', own.id], ['received', end.id]]);
      noErrors('bob3');
      java.send({ cmd: 'close', client: 'bob3' });
    } catch (err) {
      throw report(err);
    }
  });

  it('a markAsRead made by onMessageReceived itself, on the callback thread, goes through', T, async () => {
    prepare();
    try {
      const M = await matter('Read in callback');
      await newClient('bob4', B, M, { busyCallbacks: true, readInCallback: true });
      const msg = await sendAs(A, M, 'read me as you show me');
      const r = await java.expect((l) => of('bob4', 'readInCallback')(l) && l.message === msg.id, 20000, 'the read made in the callback');
      assert.equal(r.ok, true, show(r));
      const state = await asSender(A, M);
      assert.ok(state.find((x) => x.id === msg.id).read_by.some((x) => x.user_id === B.id));
      noErrors('bob4');
      java.send({ cmd: 'close', client: 'bob4' });
    } catch (err) {
      throw report(err);
    }
  });
});
