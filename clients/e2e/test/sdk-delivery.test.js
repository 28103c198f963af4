// "Nothing lost, end to end" for the RealtimeChat SDK (clients/js) under
// Node, against a real `parley serve`: every message the API acknowledged in a
// subscribed matter reaches the app once, in id order, whether it came live,
// after a socket outage or after a server restart, and a read mark never
// covers a message the SDK has not shown.
//
// Outages are real: a TCP gate in front of Bob's WebSocket holds his network
// off (REST still goes straight to the server, as when only the socket
// dropped), and the server is stopped and started again on the same port and
// data directory. A message Bob's socket never gets while it stays connected
// is made with the API's own X-Socket-ID exclusion (Laravel's toOthers()):
// Alice's send names Bob's socket, so the server leaves that socket out of
// the event — the hole a socket has when a delivery is lost.
//
// Absence is asserted with markers: after the messages under test a last
// message is sent, and once it has arrived everything emitted before it is
// final (the SDK emits a matter's messages in id order).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// A namespace import: NotShownError is new, and this file also runs against an SDK without it.
import * as Sdk from '@parley/realtime-chat';

import {
  adminMatter, adminUsers, disconnectAll, loginTokens, sdkOptions, show, startParley, waitFor, runAdmin as admin, chatOk as ok, tcpGate,
} from './helpers.js';

const PASSWORD = 'delivery-pass-1';

/** Records the SDK's events and the REST calls it makes. */
function record(chat) {
  const rec = { events: [] };
  for (const ev of ['onMessageReceived', 'onMessageSent', 'onCatchUp', 'onError', 'onConnected', 'onNotification']) {
    chat.on(ev, (e) => rec.events.push({ ev, e }));
  }
  rec.of = (ev) => rec.events.filter((x) => x.ev === ev).map((x) => x.e);
  rec.received = (matterId) => rec.of('onMessageReceived').filter((e) => matterId === undefined || e.matterId === matterId);
  rec.ids = (matterId) => rec.received(matterId).map((e) => e.message.id);
  rec.dump = () => rec.events.map((x) => `${x.ev} ${show(x.e)}`).join('\n');
  return rec;
}

/** A fetch that goes to the network unchanged and keeps [method, url] of every call. */
function countingFetch(log) {
  return (url, init = {}) => {
    log.push([init.method || 'GET', String(url)]);
    return globalThis.fetch(url, init);
  };
}

describe('RealtimeChat SDK: nothing lost, end to end', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-delivery-'));
  let server = null;
  let port = 0;
  let gate = null;
  const chats = [];
  let A;
  let B;
  let tok = {};
  let matterSeq = 0;

  const start = async () => {
    server = await startParley({ env: { PARLEY_DATA_DIR: dataDir, PARLEY_API_RATE_LIMIT: '0' }, port: port || undefined });
    port = server.port;
  };
  /** A new matter with Alice and Bob in it. */
  const matter = (title) => adminMatter(dataDir, `${title} ${++matterSeq}`, [A, B]);
  /** Bob's SDK, its WebSocket through the gate; REST straight to the server. */
  const bob = (opts = {}) => {
    const chat = new Sdk.RealtimeChat(sdkOptions({ key: server.key, wsPort: gate.port, apiPort: port, user: B, token: tok[B.id] }, opts));
    chats.push(chat);
    return chat;
  };
  /** Alice sends through REST; `except` is a socket id the server leaves out of the event. */
  const send = async (m, text, { except } = {}) => (await ok(port, 'POST', '/api/messages/send', {
    token: tok[A.id], body: { message: text, client_matter_id: m.id }, headers: except ? { 'X-Socket-ID': except } : {},
  }, 201)).data;
  /** The matter's messages as Alice (the sender) sees them: read_by says who read each. */
  const asSender = async (m) => (await ok(port, 'GET', `/api/messages?client_matter_id=${m.id}&limit=100`, { token: tok[A.id] })).data;
  const readByBob = (msg) => (msg.read_by || []).some((r) => Number(r.user_id) === B.id);

  const subscribedOn = (chat, name, ms = 8000) => waitFor(() => {
    const ch = chat.pusher.channel(name);
    return ch && ch.subscribed;
  }, ms, `${name} subscribed`);

  /** Holds Bob's network off and waits until his SDK noticed. */
  const cut = async (chat) => {
    gate.close();
    await waitFor(() => chat.connectionState !== 'connected', 15000, 'Bob to notice the outage');
  };
  /** Lets Bob's network back and waits until `channel` is subscribed again. */
  const restore = async (chat, channel) => {
    gate.open();
    await waitFor(() => chat.connectionState === 'connected', 45000, 'Bob to reconnect');
    await subscribedOn(chat, channel, 15000);
  };
  /** Sends a marker message and waits (bounded) until Bob's SDK emitted it. */
  const marker = async (rec, m, label = 'marker') => {
    const msg = await send(m, `${label} ${Date.now()}`);
    await waitFor(() => rec.ids(m.id).includes(msg.id), 20000, `${label} ${msg.id} at Bob`).catch((err) => {
      err.message += `\n--- Bob's SDK ---\n${rec.dump()}`;
      throw err;
    });
    return msg;
  };
  const noCatchUpErrors = (rec) => assert.deepEqual(rec.of('onError').filter((e) => e.type === 'catchup'), [], 'no catch-up errors');

  before(async () => {
    await start();
    gate = await tcpGate(port);
    [A, B] = await adminUsers(dataDir, 'delivery.test', PASSWORD, ['Alice', 'Bob']);
    tok = await loginTokens(port, [A, B], PASSWORD);
  });
  after(async () => {
    disconnectAll(chats);
    if (gate) await gate.stop();
    if (server) await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  /**
   * The seed guide's usage, one channel: two messages live, then the server restarts while
   * Bob's network is held off and three messages are sent; after he reconnects exactly those
   * three reach him, once each, in id order.
   */
  async function restartCase(t, { userChannel }) {
    const M = await matter(userChannel ? 'Seed user channel' : 'Seed matter channel');
    const old = await send(M, 'from before Bob subscribed');
    const b = bob();
    const rec = record(b);
    const channel = userChannel ? `private-user.${B.id}` : `private-matter.${M.id}`;
    try {
      if (userChannel) b.subscribeToUserChannel();
      else b.subscribeToMatterChannel(M.id, { presence: false });
      await subscribedOn(b, channel);
      const live = [await send(M, 'live 1'), await send(M, 'live 2')];
      await waitFor(() => rec.ids(M.id).length >= 2, 10000, 'the two live messages');

      await cut(b);
      await server.stop();
      await start();
      const meanwhile = [];
      for (let i = 1; i <= 3; i++) meanwhile.push(await send(M, `while Bob was away ${i}`));
      assert.notEqual(b.connectionState, 'connected', 'Bob is still held off by the gate');
      await restore(b, channel);
      const last = await marker(rec, M);

      assert.deepEqual(rec.ids(M.id), [...live, ...meanwhile, last].map((m) => m.id),
        `each message once, in id order, nothing from before the subscription\n${rec.dump()}`);
      assert.ok(!rec.ids(M.id).includes(old.id));
      assert.deepEqual(rec.received(M.id).slice(2, 5).map((e) => e.source), ['catchup', 'catchup', 'catchup']);
      noCatchUpErrors(rec);
    } catch (err) {
      err.message += `\n--- Bob's SDK ---\n${rec.dump()}\n--- parley ---\n${server.log().slice(-3000)}`;
      throw err;
    } finally {
      b.disconnect();
      gate.open(); // for the next test, also when this one failed
    }
  }

  it('seed API, matter channel only (no history loaded): the 3 messages sent while the server restarted reach Bob once each, in order',
    { timeout: 120000 }, (t) => restartCase(t, { userChannel: false }));

  it('seed API, user channel only: the same through subscribeToUserChannel()', { timeout: 120000 }, (t) => restartCase(t, { userChannel: true }));

  it('an empty matter opened (position 0): a message sent while Bob was offline is caught up', { timeout: 90000 }, async () => {
    const M = await matter('Empty');
    const b = bob();
    const rec = record(b);
    try {
      b.subscribeToMatterChannel(M.id, { presence: false });
      assert.deepEqual(await b.loadHistory(M.id), [], 'the matter is empty');
      await subscribedOn(b, `private-matter.${M.id}`);
      await cut(b);
      const first = await send(M, 'the first words, sent while Bob was away');
      assert.equal(first.previous_id, 0, 'the matter\'s first message');
      await restore(b, `private-matter.${M.id}`);
      const last = await marker(rec, M);
      assert.deepEqual(rec.ids(M.id), [first.id, last.id], rec.dump());
      assert.equal(rec.received(M.id)[0].source, 'catchup');
      noCatchUpErrors(rec);
    } finally {
      b.disconnect();
      gate.open(); // for the next test, also when this one failed
    }
  });

  it('read marks never cover what the SDK has not shown: markMatterRead is clamped, markAsRead of an unshown id refused', { timeout: 90000 }, async () => {
    const M = await matter('Read clamp');
    const b = bob();
    const rec = record(b);
    try {
      b.subscribeToMatterChannel(M.id, { presence: false });
      await subscribedOn(b, `private-matter.${M.id}`);
      const shown = await send(M, 'shown');
      await waitFor(() => rec.ids(M.id).includes(shown.id), 10000, 'the shown message');

      await cut(b);
      const unseen = [await send(M, 'unseen 1'), await send(M, 'unseen 2')];
      // Bob's app learns the newest id some other way (the matter list) and marks up to it.
      const listed = (await b.getMatters()).find((m) => m.id === M.id);
      assert.equal(listed.last_message.id, unseen[1].id);
      const res = await b.markMatterRead(M.id, listed.last_message.id);
      assert.equal(res.up_to_id, shown.id, `clamped to the last message shown: ${show(res)}`);
      await assert.rejects(b.markAsRead(unseen[0].id), (err) => Sdk.NotShownError && err instanceof Sdk.NotShownError && err.messageId === unseen[0].id);
      let state = await asSender(M);
      const byId = (id) => state.find((m) => m.id === id);
      assert.ok(readByBob(byId(shown.id)), 'the shown message is read');
      for (const u of unseen) {
        assert.deepEqual(byId(u.id).read_by, [], `unseen ${u.id}: nobody has read it`);
        assert.equal(byId(u.id).read_at, null);
      }

      // Back online: the SDK emits them; now they can be marked.
      await restore(b, `private-matter.${M.id}`);
      const last = await marker(rec, M);
      assert.deepEqual(rec.ids(M.id), [shown.id, ...unseen.map((m) => m.id), last.id]);
      const res2 = await b.markMatterRead(M.id, last.id);
      assert.equal(res2.up_to_id, last.id);
      state = await asSender(M);
      for (const m of [...unseen, last]) assert.ok(readByBob(byId(m.id)), `${m.id} read after it was shown`);
      const one = await send(M, 'read one by one');
      await waitFor(() => rec.ids(M.id).includes(one.id), 10000, 'one more');
      assert.equal((await b.markAsRead(one.id)).message_id, one.id);
    } catch (err) {
      err.message += `\n--- Bob's SDK ---\n${rec.dump()}`;
      throw err;
    } finally {
      b.disconnect();
      gate.open(); // for the next test, also when this one failed
    }
  });

  it('user channel: a matter Bob is added to later is followed from its first message, holes included', { timeout: 60000 }, async () => {
    const M = await adminMatter(dataDir, `Joined later ${++matterSeq}`, [A]);
    const b = bob();
    const rec = record(b);
    try {
      b.subscribeToUserChannel();
      await subscribedOn(b, `private-user.${B.id}`);
      await admin(dataDir, ['matters', 'add-member', '--matter', String(M.id), '--user', String(B.id)]);
      const j1 = await send(M, 'welcome');
      const j2 = await send(M, 'j2');
      const j3 = await send(M, 'j3 (never reaches Bob\'s socket)', { except: b.socketId() });
      const last = await marker(rec, M);
      assert.equal(j1.previous_id, 0);
      assert.deepEqual(rec.ids(M.id), [j1.id, j2.id, j3.id, last.id], rec.dump());
      noCatchUpErrors(rec);
    } finally {
      b.disconnect();
    }
  });

  it('previous_id: a live message after a hole is held back until the hole is fetched; own sends advance the chain', { timeout: 90000 }, async () => {
    const M = await matter('Holes');
    const calls = [];
    const b = bob({ fetch: countingFetch(calls) });
    const rec = record(b);
    const catchUps = () => calls.filter(([method, url]) => method === 'GET' && /\/messages\?/.test(url) && !/[?&]page=/.test(url)).length;
    try {
      // Both channels bring every message: each must still be emitted once.
      b.subscribeToUserChannel();
      b.subscribeToMatterChannel(M.id, { presence: false });
      await subscribedOn(b, `private-user.${B.id}`);
      await subscribedOn(b, `private-matter.${M.id}`);
      const g1 = await send(M, 'g1');
      await waitFor(() => rec.ids(M.id).includes(g1.id), 10000, 'g1');
      const socket = b.socketId();

      // g2 and g3 never reach Bob's socket; g4 does, naming g3 as the message before it.
      const g2 = await send(M, 'g2 (lost on the way)', { except: socket });
      const g3 = await send(M, 'g3 (lost on the way)', { except: socket });
      const g4 = await send(M, 'g4');
      assert.equal(g4.previous_id, g3.id);
      await waitFor(() => rec.ids(M.id).includes(g4.id), 15000, 'g4');
      assert.deepEqual(rec.ids(M.id), [g1, g2, g3, g4].map((m) => m.id), `the hole filled before g4, in order\n${rec.dump()}`);
      assert.deepEqual(rec.received(M.id).map((e) => e.source), ['live', 'catchup', 'catchup', 'live']);
      assert.equal(b.socketId(), socket, 'no reconnect: the previous_id chain found the hole');

      // Bob's own send continues the chain: Alice's next message is no hole (no catch-up).
      const before = catchUps();
      const mine = await b.sendMessage({ message: 'from Bob', client_matter_id: M.id });
      assert.equal(mine.previous_id, g4.id);
      const g5 = await send(M, 'g5');
      await waitFor(() => rec.ids(M.id).includes(g5.id), 10000, 'g5');
      assert.equal(catchUps(), before, 'no catch-up after Bob\'s own send');

      // Bob's own send after a message he has not got: the hole is fetched, his own is not emitted.
      const g6 = await send(M, 'g6 (lost on the way)', { except: socket });
      const mine2 = await b.sendMessage({ message: 'from Bob, after a hole', client_matter_id: M.id });
      assert.equal(mine2.previous_id, g6.id);
      await waitFor(() => rec.ids(M.id).includes(g6.id), 10000, 'g6 fetched');
      const last = await marker(rec, M);
      assert.equal(last.previous_id, mine2.id);
      assert.deepEqual(rec.ids(M.id), [g1, g2, g3, g4, g5, g6, last].map((m) => m.id), rec.dump());
      assert.deepEqual(rec.of('onMessageSent').map((s) => s.message.id), [mine.id, mine2.id]);
      assert.ok(!rec.ids().includes(mine.id) && !rec.ids().includes(mine2.id), 'own messages are not emitted as received');
      const ids = rec.ids(M.id);
      assert.deepEqual(ids, [...ids].sort((x, y) => x - y));
      noCatchUpErrors(rec);
    } catch (err) {
      err.message += `\n--- Bob's SDK ---\n${rec.dump()}\n--- REST calls ---\n${calls.map((c) => c.join(' ')).join('\n')}`;
      throw err;
    } finally {
      b.disconnect();
      gate.open(); // for the next test, also when this one failed
    }
  });
});
