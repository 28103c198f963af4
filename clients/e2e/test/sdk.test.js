// The RealtimeChat SDK (clients/js) under Node, against a real `parley serve`:
// the SDK loads laravel-echo and pusher-js itself (pusher-js's Node build, as
// Node resolves 'pusher-js'), authorizes through /api/broadcasting/auth with
// real tokens and talks to the REST API. Outages are real: the server is
// stopped and started again on the same port and data directory, and a TCP
// gate in front of one client's WebSocket holds it off while messages are
// sent, so what it gets afterwards can only come from catch-up.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { RealtimeChat } from '@parley/realtime-chat';

import {
  adminMatter, adminUsers, disconnectAll, loginTokens, sdkOptions, show, startParley, waitFor, chatApi as api, chatOk as ok, tcpGate,
} from './helpers.js';

const PASSWORD = 'sdk-pass-1';

/**
 * An HTTP proxy in front of the REST API that forwards every request, but for
 * the first `loseAnswers` sends lets the server answer and then cuts the
 * client's connection: the message is committed, the client never hears so.
 */
async function lossyProxy(targetPort, { loseAnswers = 1 } = {}) {
  const sends = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const isSend = req.method === 'POST' && req.url.endsWith('/messages/send');
    if (isSend) sends.push(JSON.parse(body.toString()));
    const headers = { ...req.headers };
    delete headers.host;
    delete headers.connection;
    delete headers['content-length'];
    const up = await fetch(`http://127.0.0.1:${targetPort}${req.url}`, {
      method: req.method, headers, body: body.length ? body : undefined, signal: AbortSignal.timeout(5000),
    });
    const text = await up.text();
    if (isSend && loseAnswers > 0) {
      loseAnswers -= 1;
      req.socket.destroy(); // committed upstream; the answer is lost
      return;
    }
    res.writeHead(up.status, { 'Content-Type': up.headers.get('content-type') || 'application/json' });
    res.end(text);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    sends,
    stop: () => new Promise((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}

/** A localStorage stand-in shared by two SDK instances (a page reload). */
function memoryStorage() {
  const m = new Map();
  return {
    map: m,
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
  };
}

/** Records every SDK event and the raw frames its pusher-js received. */
function record(chat) {
  const rec = { events: [], frames: [] };
  for (const ev of ['onMessageReceived', 'onMessageSent', 'onMessageQueued', 'onTyping', 'onPresenceChanged', 'onMemberJoined',
    'onMemberLeft', 'onConnectionStateChange', 'onConnected', 'onCatchUp', 'onError', 'onUnreadCountUpdated', 'onMessagesRead',
    'onNotification', 'onMessageFailed', 'onMessageDeleted', 'onMessageUpdated', 'onMessageRead']) {
    chat.on(ev, (e) => rec.events.push({ ev, e, t: Date.now() }));
  }
  chat.pusher.bind_global((event, data) => rec.frames.push({ event, data }));
  rec.of = (ev) => rec.events.filter((x) => x.ev === ev).map((x) => x.e);
  rec.received = () => rec.of('onMessageReceived');
  rec.dump = () => rec.events.map((x) => `${x.ev} ${show(x.e)}`).join('\n');
  // Keep the frames on the wire too: pusher-js hands each channel's events to bind_global.
  return rec;
}

async function channelSubscribed(chat, name, ms = 8000) {
  await waitFor(() => {
    const ch = chat.pusher.channel(name);
    return ch && ch.subscribed;
  }, ms, `${name} subscribed`);
}

describe('RealtimeChat SDK (clients/js) under Node', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-sdk-'));
  let server = null;
  let port = 0;
  const chats = [];
  const closers = [];
  let A;
  let B;
  let M;
  let tok = {};

  const start = async () => {
    server = await startParley({ env: { PARLEY_DATA_DIR: dataDir, PARLEY_API_RATE_LIMIT: '0' }, port: port || undefined });
    port = server.port;
    return server;
  };
  const newChat = (user, opts = {}) => {
    const chat = new RealtimeChat(sdkOptions({ key: server.key, wsPort: port, apiPort: port, user, token: tok[user.id] }, opts));
    chats.push(chat);
    return chat;
  };
  const send = async (user, text) => (await ok(port, 'POST', '/api/messages/send',
    { token: tok[user.id], body: { message: text, client_matter_id: M.id } }, 201)).data;
  const history = async (user, matterId = M.id) => (await ok(port, 'GET',
    `/api/messages?client_matter_id=${matterId}&limit=100`, { token: tok[user.id] })).data.slice().reverse();

  before(async () => {
    await start();
    [A, B] = await adminUsers(dataDir, 'sdk.test', PASSWORD, ['Avery', 'Blake']);
    M = await adminMatter(dataDir, 'SDK matter', [A, B]);
    tok = await loginTokens(port, [A, B], PASSWORD);
  });
  after(async () => {
    disconnectAll(chats);
    for (const c of closers) await c();
    if (server) await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('catch-up after the server restarts: messages sent meanwhile arrive once, none missed, none twice', { timeout: 90000 }, async () => {
    const gate = await tcpGate(port);
    closers.push(gate.stop);
    const b = newChat(B, { wsPort: gate.port });
    const rec = record(b);
    try {
      b.subscribeToUserChannel();
      b.subscribeToMatterChannel(M.id);
      const earlier = await send(A, 'before anything');
      const shown = await b.loadHistory(M.id); // sets the catch-up cursor
      assert.deepEqual(shown.map((m) => m.id), [earlier.id]);
      await channelSubscribed(b, `private-user.${B.id}`);
      await channelSubscribed(b, `private-matter.${M.id}`);

      // Live: each message reaches B twice on the wire (user and matter channel), once in the SDK.
      const m1 = await send(A, 'live one');
      await waitFor(() => rec.frames.filter((f) => f.event.endsWith('MessageSent') && f.data.message.id === m1.id).length === 2,
        5000, 'm1 on both channels');
      assert.deepEqual(rec.received().map((e) => [e.message.id, e.source]), [[m1.id, 'live']]);

      // Outage: B's network drops, the server restarts; A sends while B is away.
      gate.close();
      await server.stop();
      await waitFor(() => b.connectionState !== 'connected', 10000, 'B to notice the outage');
      await start();
      const meanwhile = [];
      for (let i = 1; i <= 5; i++) meanwhile.push(await send(A, `meanwhile ${i}`));
      assert.notEqual(b.connectionState, 'connected', 'B is still held off by the gate');

      // B's network returns: pusher-js reconnects by itself, the SDK catches up.
      const mark = rec.events.length;
      gate.open();
      const caught = await waitFor(() => rec.events.slice(mark).find((x) => x.ev === 'onCatchUp' && x.e.matterId === M.id)?.e,
        45000, 'onCatchUp after the reconnect');
      assert.deepEqual(caught.messages.map((m) => m.id).filter((id) => id > m1.id), meanwhile.map((m) => m.id));
      assert.ok(rec.of('onConnected').some((c) => c.reconnected), 'onConnected {reconnected: true}');

      // Live again afterwards; its two wire copies and catch-up's view of m1 are not emitted again.
      await channelSubscribed(b, `private-matter.${M.id}`);
      await channelSubscribed(b, `private-user.${B.id}`);
      const m7 = await send(A, 'live again');
      await waitFor(() => rec.frames.filter((f) => f.event.endsWith('MessageSent') && f.data.message.id === m7.id).length === 2,
        8000, 'm7 on both channels');
      assert.deepEqual(rec.received().map((e) => [e.message.id, e.source]),
        [[m1.id, 'live'], ...meanwhile.map((m) => [m.id, 'catchup']), [m7.id, 'live']],
        `every message once, in order\n${rec.dump()}`);
      assert.deepEqual(rec.received().map((e) => e.message.message), ['live one', 'meanwhile 1', 'meanwhile 2', 'meanwhile 3',
        'meanwhile 4', 'meanwhile 5', 'live again']);
      // Notifications only for live messages (not for the catch-up).
      assert.deepEqual(rec.of('onNotification').map((n) => n.message.id), [m1.id, m7.id]);
      // After the reconnect the unread counts were fetched again and emitted.
      assert.ok(rec.of('onUnreadCountUpdated').length >= 1);
    } catch (err) {
      err.message += `\n--- B's SDK events ---\n${rec.dump()}\n--- parley ---\n${server.log().slice(-3000)}`;
      throw err;
    } finally {
      b.disconnect();
    }
  });

  it('offline queue: sends made while the server is down are kept (across a reload) and flushed in order, exactly once', { timeout: 90000 }, async () => {
    const storage = memoryStorage();
    const a1 = newChat(A, { storage });
    const b = newChat(B);
    const recB = record(b);
    const rec1 = record(a1);
    try {
      a1.subscribeToUserChannel();
      b.subscribeToMatterChannel(M.id);
      await b.loadHistory(M.id);
      await waitFor(() => a1.isConnected, 8000, 'A connected');
      await channelSubscribed(b, `private-matter.${M.id}`);
      const before = await history(A);

      await server.stop();
      await waitFor(() => !a1.isConnected, 10000, 'A to notice the outage');
      const texts = ['queued 1', 'queued 2 — ünïcødé ✓', 'queued 3', 'queued 4', 'queued 5'];
      const promises = texts.map((t) => a1.sendMessage({ message: t, client_matter_id: M.id }));
      assert.equal(a1.pendingMessages.length, 5);
      assert.deepEqual(a1.pendingMessages.map((q) => q.message), texts);
      assert.equal(rec1.of('onMessageQueued').length, 5, 'each send while offline is announced as queued');
      const saved = JSON.parse(storage.getItem(`parley-chat-queue:${A.id}`));
      assert.deepEqual(saved.map((q) => q.message), texts, 'the queue is persisted');
      assert.equal(new Set(saved.map((q) => q.client_message_id)).size, 5, 'one client_message_id per message');
      promises.forEach((p) => p.catch(() => {}));

      // The page is reloaded while offline: a new instance finds the queue in storage.
      a1.disconnect();
      const a2 = newChat(A, { storage });
      const rec2 = record(a2);
      await waitFor(() => a2.pendingMessages.length === 5, 2000, 'the reloaded instance to load the queue');

      await start();
      await waitFor(() => rec2.of('onMessageSent').length === 5, 45000, 'the queue to be flushed');
      assert.deepEqual(rec2.of('onMessageSent').map((s) => s.message.message), texts, 'flushed in order');
      assert.deepEqual(rec2.of('onMessageSent').map((s) => s.client_message_id), saved.map((q) => q.client_message_id));
      assert.equal(a2.pendingMessages.length, 0);
      assert.equal(storage.getItem(`parley-chat-queue:${A.id}`), null, 'the stored queue is emptied');

      const after = await history(A);
      const added = after.slice(before.length);
      assert.deepEqual(added.map((m) => [m.message, m.sender_id]), texts.map((t) => [t, A.id]), 'each message stored once, in order');
      // B (online again) gets them live or by catch-up, each once, in order.
      await waitFor(() => recB.received().filter((e) => texts.includes(e.message.message)).length === 5, 45000, 'B to get the 5 messages');
      assert.deepEqual(recB.received().filter((e) => texts.includes(e.message.message)).map((e) => e.message.id), added.map((m) => m.id));
    } catch (err) {
      err.message += `\n--- A's SDK events ---\n${rec1.dump()}\n--- parley ---\n${server.log().slice(-3000)}`;
      throw err;
    }
  });

  it('a send whose answer was lost is retried with the same client_message_id and stored once', { timeout: 60000 }, async () => {
    const proxy = await lossyProxy(port, { loseAnswers: 1 });
    closers.push(proxy.stop);
    const a = newChat(A, { apiBaseUrl: `http://127.0.0.1:${proxy.port}/api` });
    const rec = record(a);
    try {
      await waitFor(() => a.isConnected, 8000, 'A connected');
      const before = await history(A);
      const stored = await a.sendMessage({ message: 'exactly once please', client_matter_id: M.id });
      assert.equal(proxy.sends.length, 2, 'the first answer was lost, so the SDK sent again');
      assert.equal(proxy.sends[0].client_message_id, proxy.sends[1].client_message_id, 'the retry carries the same client_message_id');
      const after = await history(A);
      const added = after.slice(before.length);
      assert.deepEqual(added.map((m) => m.message), ['exactly once please'], 'stored once although sent twice');
      assert.equal(stored.id, added[0].id, 'the retry answered the stored message');

      // The same key sent again directly answers the existing message (200), and stores nothing.
      const again = await api(port, 'POST', '/api/messages/send',
        { token: tok[A.id], body: { message: 'exactly once please', client_matter_id: M.id, client_message_id: proxy.sends[0].client_message_id } });
      assert.equal(again.status, 200, `repeat answers 200: ${show(again.body)}`);
      assert.equal(again.body.data.id, stored.id);
      assert.equal((await history(A)).length, after.length);
    } catch (err) {
      err.message += `\n--- A's SDK events ---\n${rec.dump()}`;
      throw err;
    }
  });

  it('typing (throttled whispers) and presence between two clients', { timeout: 60000 }, async () => {
    const a = newChat(A, { typingTimeoutMs: 400 });
    const b = newChat(B, { typingTimeoutMs: 400 });
    const recA = record(a);
    const recB = record(b);
    try {
      b.subscribeToMatterChannel(M.id);
      await channelSubscribed(b, `presence-matter.${M.id}`);
      await channelSubscribed(b, `private-matter.${M.id}`);
      a.subscribeToMatterChannel(M.id);
      await channelSubscribed(a, `presence-matter.${M.id}`);
      await channelSubscribed(a, `private-matter.${M.id}`);

      // Presence: each sees both members online, with names from the server's user_info.
      await waitFor(() => b.onlineMembers(M.id).length === 2, 5000, 'B to see A join');
      assert.deepEqual(b.onlineMembers(M.id).map((u) => [Number(u.id), u.name]).sort(), [[A.id, A.name], [B.id, B.name]].sort());
      assert.deepEqual(recB.of('onMemberJoined').map((j) => Number(j.member.id)), [A.id]);
      assert.deepEqual(a.onlineMembers(M.id).map((u) => Number(u.id)).sort(), [A.id, B.id].sort());

      // Ten keystrokes in a row send one whisper; stopping sends the second.
      const sent = [];
      for (let i = 0; i < 10; i++) sent.push(a.typing(M.id));
      assert.deepEqual(sent, [true, false, false, false, false, false, false, false, false, false]);
      assert.equal(a.stopTyping(M.id), true);
      // The stop whisper is sent after the others on the same socket and channel: once it is
      // in, every typing whisper A sent has arrived.
      await waitFor(() => recB.of('onTyping').some((t) => t.typing === false), 5000, 'B to see A stop typing');
      assert.deepEqual(recB.frames.filter((f) => f.event === 'client-typing').map((f) => f.data.typing), [true, false],
        'exactly two whispers on the wire');
      assert.deepEqual(recB.of('onTyping').map((t) => [t.userId, t.name, t.typing]), [[A.id, A.name, true], [A.id, A.name, false]]);
      assert.deepEqual(recA.of('onTyping'), [], 'nobody sees their own typing');

      // Typing without a stop expires on the other side (typingTimeoutMs).
      assert.equal(a.typing(M.id), true);
      await waitFor(() => recB.of('onTyping').length === 4, 5000, 'typing to start and expire');
      assert.deepEqual(recB.of('onTyping').slice(2).map((t) => t.typing), [true, false]);
      assert.deepEqual(b.typingUsers(M.id), []);

      // A leaves: B sees it go offline.
      a.disconnect();
      await waitFor(() => recB.of('onMemberLeft').length === 1, 8000, 'B to see A leave');
      assert.equal(Number(recB.of('onMemberLeft')[0].member.id), A.id);
      assert.deepEqual(b.onlineMembers(M.id).map((u) => Number(u.id)), [B.id]);
    } catch (err) {
      err.message += `\n--- B's SDK events ---\n${recB.dump()}`;
      throw err;
    }
  });

  it('read receipts: markMatterRead clears a backlog with one request; markAsRead; receipts reach the sender', { timeout: 60000 }, async () => {
    const a = newChat(A);
    const b = newChat(B);
    const recA = record(a);
    const recB = record(b);
    try {
      a.subscribeToUserChannel();
      a.subscribeToMatterChannel(M.id, { presence: false }); // receipts come on both of A's channels
      b.subscribeToUserChannel();
      await channelSubscribed(a, `private-user.${A.id}`);
      await channelSubscribed(a, `private-matter.${M.id}`);
      await channelSubscribed(b, `private-user.${B.id}`);
      const sent = [];
      for (let i = 1; i <= 3; i++) sent.push(await a.sendMessage({ message: `backlog ${i}`, client_matter_id: M.id }));
      await waitFor(() => recB.received().filter((e) => sent.some((s) => s.id === e.message.id)).length === 3, 5000, 'B to get 3');
      const res = await b.markMatterRead(M.id, sent[2].id);
      assert.equal(res.up_to_id, sent[2].id);
      await waitFor(() => recB.of('onUnreadCountUpdated').some((c) => c.matters[String(M.id)] === 0), 5000, 'B\'s count to reach 0');
      await waitFor(() => recA.of('onMessagesRead').some((r) => r.up_to_id === sent[2].id && r.reader_id === B.id), 5000, 'A to get MessagesRead');
      await waitFor(() => recA.frames.filter((f) => f.event.endsWith('\\MessagesRead') && f.data.up_to_id === sent[2].id).length === 2,
        5000, 'MessagesRead on both of A\'s channels');
      assert.equal(recA.of('onMessagesRead').filter((r) => r.up_to_id === sent[2].id).length, 1, 'emitted once');

      const one = await a.sendMessage({ message: 'read me', client_matter_id: M.id });
      await waitFor(() => recB.received().some((e) => e.message.id === one.id), 5000, 'B to get it');
      const receipt = await b.markAsRead(one.id);
      assert.equal(receipt.message_id, one.id);
      // MessageReceived is also published on the matter channel; A listens on its user channel.
      await waitFor(() => recA.of('onMessageRead').some((r) => r.message_id === one.id && r.reader_id === B.id), 5000, 'A to get the receipt');
      await waitFor(() => recA.frames.filter((f) => f.event.endsWith('\\MessageReceived') && f.data.message_id === one.id).length === 2,
        5000, 'MessageReceived on both of A\'s channels');
      assert.equal(recA.of('onMessageRead').filter((r) => r.message_id === one.id).length, 1, 'emitted once');
    } catch (err) {
      err.message += `\n--- A frames ---\n${show(recA.frames)}\n--- A ---\n${recA.dump()}\n--- B ---\n${recB.dump()}`;
      throw err;
    }
  });

  it('a wrong app key is reported as an error with code 4001 and the state "failed"', { timeout: 30000 }, async () => {
    const c = newChat(A, { reverbKey: 'not-the-key' });
    const rec = record(c);
    await waitFor(() => c.connectionState === 'failed', 10000, 'state failed');
    const err = rec.of('onError').find((e) => e.code === 4001);
    assert.ok(err, `onError with code 4001: ${rec.dump()}`);
    assert.equal(err.type, 'app_key');
    assert.match(err.message, /not-the-key/);
  });
});
