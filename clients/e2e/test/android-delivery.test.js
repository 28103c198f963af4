// "Nothing lost, end to end" for the Android client (clients/android: RealtimeChat over the
// official Pusher Java SDK), compiled with javac --release 8 and driven on the JVM by its
// RealtimeChatDriver against a real `parley serve`. Bob is the Android user; Alice sends
// through REST. Bob's WebSocket goes through a TCP gate that holds his network off (REST goes
// straight to the server), and the server restarts on the same port and data directory.
// A message Bob's socket never gets while it stays connected is made with the API's own
// X-Socket-ID exclusion: Alice's send names Bob's socket, so the server leaves it out.
//
// Covered: the seed usage (subscribeToMatterChannel only, no history fetched) across a server
// restart, a hole found through previous_id, and read marks that never cover what Bob was not
// shown (markMatterRead lowered, markAsRead refused). Absence is shown by a marker message that
// arrives after the messages under test (the client delivers a matter's messages in id order).
//
// Needs what the other Java tests need (see java-helpers.js).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { adminMatter, adminUsers, loginTokens, show, startParley, chatOk as ok, tcpGate } from './helpers.js';
import {
  ANDROID_DRIVER, MISSING, SKIP, compileAndroid, driverRequests, requireJava, runJava,
} from './java-helpers.js';

const PASSWORD = 'android-delivery-1';

describe('Android client: nothing lost, end to end', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-android-delivery-'));
  let classDir = null;
  let compileError = null;
  let server = null;
  let port = 0;
  let gate = null;
  let java = null;
  let A;
  let B;
  let tok = {};
  let matterSeq = 0;

  const start = async () => {
    server = await startParley({ env: { PARLEY_DATA_DIR: dataDir, PARLEY_API_RATE_LIMIT: '0' }, port: port || undefined });
    port = server.port;
  };

  before(async () => {
    if (MISSING.length) return;
    ({ classDir, compileError } = await compileAndroid());
    if (compileError) return;
    await start();
    gate = await tcpGate(port);
    [A, B] = await adminUsers(dataDir, 'android-delivery.test', PASSWORD, ['Alice', 'Bob']);
    tok = await loginTokens(port, [A, B], PASSWORD);
    java = runJava(classDir, ANDROID_DRIVER);
  });
  after(async () => {
    if (java) await java.quit();
    if (gate) await gate.stop();
    if (server) await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
    if (classDir) fs.rmSync(classDir, { recursive: true, force: true });
  });

  const matter = (title) => adminMatter(dataDir, `${title} ${++matterSeq}`, [A, B]);
  const send = async (m, text, { except } = {}) => (await ok(port, 'POST', '/api/messages/send', {
    token: tok[A.id], body: { message: text, client_matter_id: m.id }, headers: except ? { 'X-Socket-ID': except } : {},
  }, 201)).data;
  const asSender = async (m) => (await ok(port, 'GET', `/api/messages?client_matter_id=${m.id}&limit=100`, { token: tok[A.id] })).data;

  const { call, value } = driverRequests(() => java, 'd');
  const of = (client, type) => (l) => l.client === client && l.type === type;
  const from = (mark, pred) => (l) => java.lines.indexOf(l) >= mark && pred(l);
  const receivedIds = (client, m) => java.lines.filter((l) => of(client, 'messageReceived')(l) && l.message.client_matter_id === m.id)
    .map((l) => l.message.id);

  /** A new Android Bob whose WebSocket goes through the gate; waits until `channel` is subscribed. */
  const newBob = async (client, subscribe, channel) => {
    await value(client, 'new', {
      host: '127.0.0.1', port: gate.port, key: server.key, token: tok[B.id], userId: B.id, userName: B.name,
      apiBaseUrl: `http://127.0.0.1:${port}/api`, maxReconnectGapInSeconds: 2,
    });
    const mark = java.lines.length;
    java.send({ client, ...subscribe });
    await java.expect(from(mark, (l) => of(client, 'subscribed')(l) && l.channel === channel), 20000, `${client} subscribed to ${channel}`,
      (l) => of(client, 'subscriptionError')(l));
  };
  /** Holds the network off; resolves once the client noticed. */
  const cut = async (client) => {
    const mark = java.lines.length;
    gate.close();
    await java.expect(from(mark, (l) => of(client, 'state')(l) && l.previous === 'CONNECTED'), 20000, `${client} to lose its connection`);
  };
  /** Lets the network back; resolves once `channel` is subscribed again. */
  const restore = async (client, channel) => {
    const mark = java.lines.length;
    gate.open();
    await java.expect(from(mark, (l) => of(client, 'subscribed')(l) && l.channel === channel), 45000, `${client} subscribed to ${channel} again`);
  };
  /** A marker message; resolves once the client delivered it. */
  const marker = async (client, m) => {
    const msg = await send(m, `marker ${Date.now()}`);
    await java.expect((l) => of(client, 'messageReceived')(l) && l.message.id === msg.id, 20000, `${client}: marker ${msg.id}`);
    return msg;
  };
  const noErrors = (client) => {
    const outage = (l) => /websocket|Connect/i.test(`${l.message} ${l.exception}`);
    assert.deepEqual(java.lines.filter((l) => of(client, 'error')(l) && !outage(l)), [], `${client}: no errors`);
  };

  const T = { timeout: 150000, skip: SKIP };
  const prepare = () => {
    requireJava();
    if (compileError) throw compileError;
  };

  it('seed usage (subscribeToMatterChannel only): the 3 messages sent while the server restarted arrive once each, in order', T, async () => {
    prepare();
    try {
      const M = await matter('Seed');
      const old = await send(M, 'from before Bob subscribed');
      await newBob('bob1', { cmd: 'subscribeMatter', matter: M.id }, `private-matter.${M.id}`);
      const live = [await send(M, 'live 1'), await send(M, 'live 2')];
      await java.expect((l) => of('bob1', 'messageReceived')(l) && l.message.id === live[1].id, 10000, 'live 2');

      await cut('bob1');
      await server.stop();
      await start();
      const meanwhile = [];
      for (let i = 1; i <= 3; i++) meanwhile.push(await send(M, `while Bob was away ${i}`));
      await restore('bob1', `private-matter.${M.id}`);
      const last = await marker('bob1', M);
      assert.deepEqual(receivedIds('bob1', M), [...live, ...meanwhile, last].map((m) => m.id),
        'each once, in id order, nothing from before the subscription');
      assert.ok(!receivedIds('bob1', M).includes(old.id));
      noErrors('bob1');
      java.send({ cmd: 'close', client: 'bob1' });
    } catch (err) {
      console.error(`--- Android client output ---\n${java && java.report()}\n--- parley ---\n${server && server.log().slice(-4000)}`);
      throw err;
    } finally {
      gate.open();
    }
  });

  it('previous_id: a hole in what the socket got is fetched before the next message; own sends continue the chain', T, async () => {
    prepare();
    try {
      const M = await matter('Holes');
      // Both channels bring each message: still delivered once.
      await newBob('bob2', { cmd: 'subscribeUser' }, `private-user.${B.id}`);
      java.send({ cmd: 'subscribeMatter', client: 'bob2', matter: M.id });
      await java.expect((l) => of('bob2', 'subscribed')(l) && l.channel === `private-matter.${M.id}`, 20000, 'bob2 matter channel');
      const g1 = await send(M, 'g1');
      await java.expect((l) => of('bob2', 'messageReceived')(l) && l.message.id === g1.id, 10000, 'g1');
      const sid = await value('bob2', 'socketId');
      assert.ok(sid, 'bob2 has a socket id');
      const g2 = await send(M, 'g2 (never reaches Bob\'s socket)', { except: sid });
      const g3 = await send(M, 'g3');
      assert.equal(g3.previous_id, g2.id);
      await java.expect((l) => of('bob2', 'messageReceived')(l) && l.message.id === g3.id, 15000, 'g3');
      assert.deepEqual(receivedIds('bob2', M), [g1.id, g2.id, g3.id], 'the missed one first, then g3');

      // Bob's own send after a message his socket missed: that one is fetched, his own not delivered.
      const g4 = await send(M, 'g4 (missed too)', { except: sid });
      const mine = await value('bob2', 'send', { matter: M.id, message: 'from Bob\'s phone' });
      assert.equal(mine.previous_id, g4.id);
      const last = await marker('bob2', M);
      assert.equal(last.previous_id, mine.id);
      assert.deepEqual(receivedIds('bob2', M), [g1.id, g2.id, g3.id, g4.id, last.id], 'once each, in order, not his own');
      noErrors('bob2');
      java.send({ cmd: 'close', client: 'bob2' });
    } catch (err) {
      console.error(`--- Android client output ---\n${java && java.report()}`);
      throw err;
    } finally {
      gate.open();
    }
  });

  it('read marks: markMatterRead never goes past what was delivered, markAsRead of an unshown message is refused', T, async () => {
    prepare();
    try {
      const M = await matter('Read clamp');
      await newBob('bob3', { cmd: 'subscribeMatter', matter: M.id }, `private-matter.${M.id}`);
      const shown = await send(M, 'shown');
      await java.expect((l) => of('bob3', 'messageReceived')(l) && l.message.id === shown.id, 10000, 'shown');

      await cut('bob3');
      const unseen = [await send(M, 'unseen 1'), await send(M, 'unseen 2')];
      const res = await value('bob3', 'readUpTo', { matter: M.id, upTo: unseen[1].id });
      assert.equal(res.up_to_id, shown.id, `lowered to the last message delivered: ${show(res)}`);
      assert.equal(res.clamped, true);
      const refused = await call('bob3', 'read', { message: unseen[0].id });
      assert.equal(refused.ok, false);
      assert.match(refused.error, /NotShownException/, show(refused));
      let state = await asSender(M);
      const byId = (id) => state.find((m) => m.id === id);
      assert.ok(byId(shown.id).read_by.some((r) => r.user_id === B.id), 'the delivered message is read');
      for (const u of unseen) {
        assert.deepEqual(byId(u.id).read_by, [], `${u.id} not delivered: nobody read it`);
        assert.equal(byId(u.id).read_at, null);
      }

      await restore('bob3', `private-matter.${M.id}`);
      const last = await marker('bob3', M);
      assert.deepEqual(receivedIds('bob3', M), [shown.id, ...unseen.map((m) => m.id), last.id]);
      const res2 = await value('bob3', 'readUpTo', { matter: M.id, upTo: last.id });
      assert.equal(res2.up_to_id, last.id);
      state = await asSender(M);
      for (const m of [...unseen, last]) assert.ok(byId(m.id).read_by.some((r) => r.user_id === B.id), `${m.id} read once delivered`);
      noErrors('bob3');
      java.send({ cmd: 'close', client: 'bob3' });
    } catch (err) {
      console.error(`--- Android client output ---\n${java && java.report()}`);
      throw err;
    } finally {
      gate.open();
    }
  });
});
