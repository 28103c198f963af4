// The RealtimeChat SDK (clients/js) under Node, against a real `parley serve`: an own send the
// SDK learns of before the answer to its POST arrives is given to the app once, as
// onMessageSent, in id order — never also as onMessageReceived, and the answer adds nothing.
//
// Alice's SDK sends through a fetch that lets the server store the message and then holds the
// answer (or loses it, or answers the repeats 503) until the test says so; her WebSocket goes
// through a TCP gate. While her answer is held the SDK can learn of her message three ways:
//   - Bob's next message arrives live; its previous_id (her message) is past her position, so
//     the SDK catches up and the fetch brings her message;
//   - her socket drops and the re-subscription's catch-up fetches it;
//   - it arrives live on her own socket (the send did not name her socket in X-Socket-ID).
// When the held answer is then lost, the send is done all the same (no repeat). And after a lost
// answer, while the send waits in the queue for its repeat (answered 503), a catch-up that
// brings it settles the send: it leaves the queue and sendMessage resolves.
//
// Nothing is asserted absent after a fixed wait: a marker message from Bob comes last, and once
// the SDK emitted it everything before it is final (a matter's messages are emitted in id order).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { RealtimeChat } from '@parley/realtime-chat';

import {
  adminMatter, adminUsers, disconnectAll, loginTokens, sdkOptions, show, startParley, waitFor, within, chatOk as ok, tcpGate,
} from './helpers.js';

const PASSWORD = 'own-send-pass-1';

/**
 * A fetch for the SDK that leaves every request alone except POST /messages/send, which it
 * treats as `ctl.action(index)` says: 'pass'; 'hold' (the server stores it, the answer waits for
 * `ctl.sends[i].release()`); 'hold-live' (the same, without X-Socket-ID, so the event reaches
 * the sender's own socket too); 'lose' (stored, then the answer is lost: a network error);
 * 'hold-lose' (stored, held, then lost on release);
 * 'busy' (not forwarded: 503 at once, as an overloaded balancer answers).
 */
function sendControl() {
  const ctl = { sends: [], action: () => 'pass' };
  ctl.fetch = async (url, init = {}) => {
    if (init.method !== 'POST' || !String(url).endsWith('/messages/send')) return globalThis.fetch(url, init);
    const entry = { request: JSON.parse(init.body), action: ctl.action(ctl.sends.length), answer: null, done: false };
    entry.held = new Promise((r) => {
      entry.release = r;
    });
    ctl.sends.push(entry);
    if (entry.action === 'busy') {
      entry.done = true;
      return new Response(JSON.stringify({ message: 'Service Unavailable' }), { status: 503, headers: { 'Content-Type': 'application/json' } });
    }
    let forward = init;
    if (entry.action === 'hold-live') {
      const headers = { ...init.headers };
      delete headers['X-Socket-ID'];
      forward = { ...init, headers };
    }
    const res = await globalThis.fetch(url, forward);
    const text = await res.text();
    entry.status = res.status;
    entry.answer = JSON.parse(text);
    if (entry.action.startsWith('hold')) await entry.held;
    entry.done = true;
    if (entry.action.endsWith('lose')) throw new TypeError('fetch failed (the test lost the answer)');
    return new Response(text, { status: res.status, headers: { 'Content-Type': 'application/json' } });
  };
  return ctl;
}

/** Records what the app hears. */
function record(chat) {
  const rec = { events: [] };
  for (const ev of ['onMessageReceived', 'onMessageSent', 'onNotification', 'onCatchUp', 'onError', 'onQueueChanged', 'onMessageFailed']) {
    chat.on(ev, (e) => rec.events.push({ ev, e }));
  }
  rec.of = (ev) => rec.events.filter((x) => x.ev === ev).map((x) => x.e);
  /** The message callbacks of a matter, in the order the app got them: [callback, id, source/queued]. */
  rec.calls = (matterId) => rec.events
    .filter((x) => (x.ev === 'onMessageReceived' || x.ev === 'onMessageSent') && Number(x.e.message.client_matter_id) === matterId)
    .map((x) => (x.ev === 'onMessageReceived' ? ['received', x.e.message.id, x.e.source] : ['sent', x.e.message.id, Boolean(x.e.queued)]));
  rec.has = (matterId, id) => rec.calls(matterId).some((c) => c[1] === id);
  rec.dump = () => rec.events.map((x) => `${x.ev} ${show(x.e)}`).join('\n');
  return rec;
}

describe('RealtimeChat SDK: an own send learned of before its answer is emitted once, as onMessageSent', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-own-send-'));
  let server = null;
  let gate = null;
  const chats = [];
  let A;
  let B;
  let tok = {};
  let matterSeq = 0;

  before(async () => {
    server = await startParley({ env: { PARLEY_DATA_DIR: dataDir, PARLEY_API_RATE_LIMIT: '0' } });
    gate = await tcpGate(server.port);
    [A, B] = await adminUsers(dataDir, 'own-send.test', PASSWORD, ['Alice', 'Bob']);
    tok = await loginTokens(server.port, [A, B], PASSWORD);
  });
  after(async () => {
    disconnectAll(chats);
    if (gate) await gate.stop();
    if (server) await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const matter = (title) => adminMatter(dataDir, `${title} ${++matterSeq}`, [A, B]);
  /** Bob sends through REST. */
  const bobSends = async (m, text) => (await ok(server.port, 'POST', '/api/messages/send', {
    token: tok[B.id], body: { message: text, client_matter_id: m.id },
  }, 201)).data;

  /** Alice's SDK: WebSocket through the gate, REST through `ctl.fetch`; follows `m`, its position known. */
  const alice = async (ctl, m) => {
    const chat = new RealtimeChat(sdkOptions({ key: server.key, wsPort: gate.port, apiPort: server.port, user: A, token: tok[A.id] },
      { fetch: ctl.fetch }));
    chats.push(chat);
    const rec = record(chat);
    chat.subscribeToMatterChannel(m.id, { presence: false });
    await waitFor(() => {
      const ch = chat.pusher.channel(`private-matter.${m.id}`);
      return ch && ch.subscribed && chat.shownUpTo(m.id) !== null;
    }, 10000, `Alice subscribed to matter ${m.id}, its position known`);
    return { chat, rec };
  };
  /** Bob's marker; resolves once Alice's SDK emitted it (everything before it is final then). */
  const marker = async (rec, m) => {
    const msg = await bobSends(m, `marker ${Date.now()}`);
    await waitFor(() => rec.has(m.id, msg.id), 20000, `marker ${msg.id} at Alice`);
    return msg;
  };
  /** Waits until send `i` reached the server and its answer is held (or lost); returns the stored message. */
  const stored = async (ctl, i, label) => (await waitFor(() => ctl.sends[i] && ctl.sends[i].answer, 10000, label)).data;
  const settled = async (p, label) => {
    const v = await within(p, 15000, 'pending');
    assert.notEqual(v, 'pending', `${label}: sendMessage still pending after 15 s`);
    return v;
  };

  it('Bob\'s next message shows the hole while the answer is held: the catch-up gives Alice\'s message as onMessageSent, the answer adds nothing',
    { timeout: 60000 }, async () => {
      const M = await matter('Hole');
      const ctl = sendControl();
      const { chat, rec } = await alice(ctl, M);
      try {
        ctl.action = () => 'hold';
        const p = chat.sendMessage({ message: 'mine, answer held', client_matter_id: M.id });
        const mine = await stored(ctl, 0, 'Alice\'s send stored');
        const b1 = await bobSends(M, 'b1');
        assert.equal(b1.previous_id, mine.id);
        await waitFor(() => rec.has(M.id, b1.id), 10000, 'b1 at Alice');
        ctl.sends[0].release();
        const res = await settled(p, 'the held send');
        assert.equal(res.id, mine.id);
        const last = await marker(rec, M);
        assert.deepEqual(rec.calls(M.id), [['sent', mine.id, false], ['received', b1.id, 'live'], ['received', last.id, 'live']],
          `each message once, in id order, hers as onMessageSent\n${rec.dump()}`);
        assert.deepEqual(chat.pendingMessages, []);
        assert.deepEqual(rec.of('onNotification').map((e) => e.message.id), [b1.id, last.id]);
        assert.equal((await chat.markMatterRead(M.id, last.id)).up_to_id, last.id);
      } catch (err) {
        err.message += `\n--- Alice's SDK ---\n${rec.dump()}`;
        throw err;
      } finally {
        chat.disconnect();
      }
    });

  it('the held answer is lost after the catch-up brought the message: the send is done, not repeated', { timeout: 60000 }, async () => {
    const M = await matter('Held then lost');
    const ctl = sendControl();
    const { chat, rec } = await alice(ctl, M);
    try {
      ctl.action = () => 'hold-lose';
      const p = chat.sendMessage({ message: 'mine, answer held, then lost', client_matter_id: M.id });
      const mine = await stored(ctl, 0, 'Alice\'s send stored');
      const b1 = await bobSends(M, 'b1');
      await waitFor(() => rec.has(M.id, b1.id), 10000, 'b1 at Alice');
      ctl.sends[0].release();
      const res = await settled(p, 'the send whose held answer was lost');
      assert.equal(res.id, mine.id);
      assert.equal(ctl.sends.length, 1, 'settled without a repeat');
      assert.deepEqual(chat.pendingMessages, []);
      const last = await marker(rec, M);
      assert.deepEqual(rec.calls(M.id), [['sent', mine.id, false], ['received', b1.id, 'live'], ['received', last.id, 'live']], rec.dump());
      assert.deepEqual(rec.of('onMessageFailed'), []);
    } catch (err) {
      err.message += `\n--- Alice's SDK ---\n${rec.dump()}`;
      throw err;
    } finally {
      chat.disconnect();
    }
  });

  it('her socket drops while the answer is held: the re-subscription\'s catch-up gives her message as onMessageSent, once',
    { timeout: 90000 }, async () => {
      const M = await matter('Resubscribe');
      const ctl = sendControl();
      const { chat, rec } = await alice(ctl, M);
      try {
        ctl.action = () => 'hold';
        const p = chat.sendMessage({ message: 'mine, answer held over a reconnect', client_matter_id: M.id });
        const mine = await stored(ctl, 0, 'Alice\'s send stored');
        gate.close();
        await waitFor(() => chat.connectionState !== 'connected', 15000, 'Alice to notice the outage');
        const catchUps = rec.of('onCatchUp').length;
        gate.open();
        await waitFor(() => rec.of('onCatchUp').slice(catchUps).some((e) => e.messages.some((m) => m.id === mine.id)), 45000,
          'the re-subscription\'s catch-up to fetch her message');
        assert.deepEqual(rec.calls(M.id), [['sent', mine.id, false]], rec.dump());
        ctl.sends[0].release();
        const res = await settled(p, 'the held send');
        assert.equal(res.id, mine.id);
        const last = await marker(rec, M);
        assert.deepEqual(rec.calls(M.id), [['sent', mine.id, false], ['received', last.id, 'live']], rec.dump());
        assert.deepEqual(chat.pendingMessages, []);
      } catch (err) {
        err.message += `\n--- Alice's SDK ---\n${rec.dump()}`;
        throw err;
      } finally {
        gate.open();
        chat.disconnect();
      }
    });

  it('her own socket gets her message live while the answer is held: onMessageSent then, once', { timeout: 60000 }, async () => {
    const M = await matter('Own live');
    const ctl = sendControl();
    const { chat, rec } = await alice(ctl, M);
    try {
      ctl.action = () => 'hold-live';
      const p = chat.sendMessage({ message: 'mine, heard on my own socket', client_matter_id: M.id });
      const mine = await stored(ctl, 0, 'Alice\'s send stored');
      await waitFor(() => rec.has(M.id, mine.id), 10000, 'her own message through her socket');
      ctl.sends[0].release();
      const res = await settled(p, 'the held send');
      assert.equal(res.id, mine.id);
      const last = await marker(rec, M);
      assert.deepEqual(rec.calls(M.id), [['sent', mine.id, false], ['received', last.id, 'live']], rec.dump());
      assert.deepEqual(rec.of('onNotification').map((e) => e.message.id), [last.id], 'no notification for her own message');
    } catch (err) {
      err.message += `\n--- Alice's SDK ---\n${rec.dump()}`;
      throw err;
    } finally {
      chat.disconnect();
    }
  });

  it('the answer was lost and the repeats are refused (503): a catch-up that brings the message settles the send', { timeout: 60000 }, async () => {
    const M = await matter('Lost answer');
    const ctl = sendControl();
    const { chat, rec } = await alice(ctl, M);
    try {
      ctl.action = (i) => (i === 0 ? 'lose' : 'busy');
      const p = chat.sendMessage({ message: 'mine, answer lost', client_matter_id: M.id });
      const mine = await stored(ctl, 0, 'Alice\'s send stored, its answer lost');
      await waitFor(() => ctl.sends.length >= 2, 10000, 'a repeat refused with 503');
      assert.equal(chat.pendingMessages.length, 1, 'the send waits in the queue');
      const b1 = await bobSends(M, 'b1');
      assert.equal(b1.previous_id, mine.id);
      await waitFor(() => rec.has(M.id, b1.id), 10000, 'b1 at Alice');
      // Every repeat is still refused: only the catch-up can settle the send.
      const res = await settled(p, 'the send whose answer was lost');
      assert.equal(res.id, mine.id);
      assert.deepEqual(chat.pendingMessages, [], 'stored: it left the queue');
      const last = await marker(rec, M);
      assert.deepEqual(rec.calls(M.id), [['sent', mine.id, true], ['received', b1.id, 'live'], ['received', last.id, 'live']], rec.dump());
      assert.deepEqual(ctl.sends.filter((s) => s.action !== 'busy').length, 1, 'stored once');
    } catch (err) {
      err.message += `\n--- Alice's SDK ---\n${rec.dump()}`;
      throw err;
    } finally {
      chat.disconnect();
    }
  });
});
