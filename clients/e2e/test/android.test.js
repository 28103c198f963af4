// The Android client (clients/android: RealtimeChat over the official Pusher
// Java SDK, pusher-websocket-java 2.4.4) against a real `parley serve` with
// the chat backend. The client's sources are compiled with javac --release 8
// (what Android accepts) and driven by its test driver
// (clients/android/src/test/java/.../RealtimeChatDriver.java), which prints
// every listener callback as a JSON line; two Android users (Ann, Bob) live in
// one JVM. Covered: private channels authorized by Parley's
// /api/broadcasting/auth with the bearer token (a non-member refused),
// MessageSent received once although it comes on both the user and the matter
// channel, a send through REST, read receipts and unread counts, typing
// whispers (throttled) between the two clients, an unknown app key, and a
// server restart: the SDK reconnects, subscribes again and the client catches
// up with what was sent while the server was away (none missed, none twice).
//
// Needs what the other Java test needs (see java-helpers.js).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  Echo, PusherClient, adminUsers, connected, disconnectAll, loginTokens, show, startParley, waitFor,
  runAdmin as admin,
  chatApi as api,
  chatOk as ok,
} from './helpers.js';
import {
  ANDROID_DRIVER, MISSING, SKIP, compileAndroid, driverRequests, requireJava, runJava,
} from './java-helpers.js';

const PASSWORD = 'android-pass-1';
const SENT = 'App\\Events\\MessageSent';

describe('Android client: clients/android RealtimeChat on the Pusher Java SDK', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-android-'));
  const servers = [];
  let classDir = null;
  let compileError = null;
  let java = null;
  const echos = [];

  before(async () => {
    if (MISSING.length) return;
    ({ classDir, compileError } = await compileAndroid());
  });
  after(async () => {
    disconnectAll(echos);
    if (java) await java.quit();
    for (const s of servers) await s.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
    if (classDir) fs.rmSync(classDir, { recursive: true, force: true });
  });

  it('subscribes with private auth, receives and sends, receipts, typing, and catches up after a server restart',
    { timeout: 180000, skip: SKIP }, async () => {
      requireJava();
      if (compileError) throw compileError;
      const start = async (port) => {
        const s = await startParley({ env: { PARLEY_DATA_DIR: dataDir }, port });
        servers.push(s);
        return s;
      };
      const s1 = await start();
      let tmp = null;
      let s2 = null;
      try {
        // Users and matters, as an admin makes them. Ann and Bob share M; Ann is not in M2.
        const [A, B, C] = await adminUsers(dataDir, 'android.test', PASSWORD, ['Ann', 'Bob', 'Cy']);
        const M = await admin(dataDir, ['matters', 'create', '--title', 'Phone matter']);
        const M2 = await admin(dataDir, ['matters', 'create', '--title', 'Not Ann\'s']);
        const M3 = await admin(dataDir, ['matters', 'create', '--title', 'Quiet matter']); // no message until the outage
        for (const [m, u] of [[M, A], [M, B], [M2, B], [M2, C], [M3, A], [M3, B]]) {
          await admin(dataDir, ['matters', 'add-member', '--matter', String(m.id), '--user', String(u.id)]);
        }
        const tok = await loginTokens(s1, [A, B], PASSWORD);
        const restSend = async (s, u, m, text) => (await ok(s, 'POST', '/api/messages/send',
          { token: tok[u.id], body: { message: text, client_matter_id: m.id } }, 201)).data;

        java = runJava(classDir, ANDROID_DRIVER);
        const { call, value } = driverRequests(() => java, 'r');
        /** The first line matching pred at or after index `from` of the output. */
        const expectFrom = (from, pred, ms, label, failIf) => java.expect(
          (l) => java.lines.indexOf(l) >= from && pred(l), ms, label, (l) => java.lines.indexOf(l) >= from && failIf && failIf(l),
        );
        const of = (client, type) => (l) => l.client === client && l.type === type;
        const received = (client, id) => java.lines.filter((l) => of(client, 'messageReceived')(l) && l.message.id === id);
        const newClient = (client, user, extra = {}) => value(client, 'new', {
          host: s1.host, port: s1.port, key: s1.key, token: tok[user.id], userId: user.id, userName: user.name,
          apiBaseUrl: `http://${s1.host}:${s1.port}/api`,
          maxReconnectGapInSeconds: 2, typingThrottleMillis: 60000, typingTimeoutMillis: 60000, ...extra,
        });
        const refused = (client) => (l) => l.client === client && (l.type === 'subscriptionError' || l.type === 'error');

        // --- subscribe: private-user and private-matter, authorized by /api/broadcasting/auth with the token.
        // Ann pages her catch-ups 2 messages at a time, so the 3 missed messages take two requests.
        for (const [client, u] of [['ann', A], ['bob', B]]) {
          await newClient(client, u, client === 'ann' ? { catchUpPageSize: 2 } : {});
          java.send({ cmd: 'subscribeUser', client });
          java.send({ cmd: 'subscribeMatter', client, matter: M.id });
          if (client === 'ann') java.send({ cmd: 'subscribeMatter', client, matter: M3.id });
          for (const ch of [`private-user.${u.id}`, `private-matter.${M.id}`, ...(client === 'ann' ? [`private-matter.${M3.id}`] : [])]) {
            await java.expect((l) => of(client, 'subscribed')(l) && l.channel === ch, 20000, `${client} subscribed to ${ch}`, refused(client));
          }
          await java.expect((l) => of(client, 'state')(l) && l.current === 'CONNECTED', 5000, `${client} CONNECTED`);
        }
        // A matter Ann is not a member of: the auth endpoint answers 403, the client reports it.
        java.send({ cmd: 'subscribeMatter', client: 'ann', matter: M2.id });
        const denied = await java.expect((l) => of('ann', 'subscriptionError')(l), 10000, 'Ann refused on M2',
          (l) => of('ann', 'subscribed')(l) && l.channel === `private-matter.${M2.id}`);
        assert.equal(denied.channel, `private-matter.${M2.id}`);
        assert.match(denied.error, /403/, `the refusal names the status: ${show(denied)}`);

        // Every MessageSent delivery to Ann, before the client's dedupe.
        for (const ch of [`private-user.${A.id}`, `private-matter.${M.id}`]) await value('ann', 'rawBind', { channel: ch, event: SENT });

        /**
         * `msg` reached Ann's socket on both channels, yet her listener heard it exactly once.
         * Marker: a typing whisper from Bob, which reaches Ann's socket after both deliveries;
         * the SDK hands events to the client in order and the client's callbacks run in order.
         */
        const receivedOnceByAnn = async (msg, label) => {
          for (const ch of [`private-user.${A.id}`, `private-matter.${M.id}`]) {
            await java.expect((l) => of('ann', 'raw')(l) && l.channel === ch && JSON.parse(l.data).message.id === msg.id,
              10000, `${label}: MessageSent ${msg.id} on ${ch} (raw)`);
          }
          const mark = java.lines.length;
          await value('bob', 'stopTyping', { matter: M.id }); // ends the throttle: the next whisper goes out
          assert.equal(await value('bob', 'typing', { matter: M.id }), true, 'Bob whispers');
          await expectFrom(mark, (l) => of('ann', 'typing')(l) && l.user === B.id && l.typing, 10000, `${label}: marker`);
          assert.equal(received('ann', msg.id).length, 1, `${label}: message ${msg.id} heard ${received('ann', msg.id).length} times`);
        };

        // --- receive: Bob sends through REST (no socket excluded): Ann hears it once.
        const m1 = await restSend(s1, B, M, 'Hello Android');
        const got1 = await java.expect((l) => of('ann', 'messageReceived')(l) && l.message.id === m1.id, 10000, 'Ann receives m1');
        // One event serves every receiver: it carries no one's read state.
        assert.deepEqual(got1.message, { ...m1, is_read: false, read_at: null, read_by: [] }, 'the event carries the REST message object');
        await receivedOnceByAnn(m1, 'm1');

        // --- send through REST from the Android client.
        const a1 = await value('ann', 'send', { matter: M.id, message: 'Hi from the phone ✓' });
        assert.equal(a1.message, 'Hi from the phone ✓');
        assert.equal(a1.client_matter_id, M.id);
        assert.equal(a1.sender_id, A.id);
        if ('client_message_id' in a1) {
          assert.match(String(a1.client_message_id), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
            'the client sends a UUID as client_message_id');
        }
        await java.expect((l) => of('ann', 'messageSent')(l) && l.message.id === a1.id, 5000, 'Ann: onMessageSent');
        await java.expect((l) => of('bob', 'messageReceived')(l) && l.message.id === a1.id, 10000, 'Bob receives a1');
        const stored = await ok(s1, 'GET', `/api/messages?client_matter_id=${M.id}&after_id=${m1.id}`, { token: tok[B.id] });
        assert.deepEqual(stored.data.map((m) => m.id), [a1.id], 'the message the client sent is stored');
        // Ann's own socket was left out (X-Socket-ID): the next message from Bob arrives, a1 never did.
        const m2 = await restSend(s1, B, M, 'Got it');
        await receivedOnceByAnn(m2, 'm2');
        assert.equal(received('ann', a1.id).length, 0, 'Ann does not hear her own message back');

        // --- read receipts and unread counts.
        const bobUnread1 = await java.expect((l) => of('bob', 'unread')(l) && l.counts.matters[M.id] === 1, 10000, 'Bob unread 1 after a1');
        const receipt = await value('bob', 'read', { message: a1.id });
        assert.equal(receipt.message_id, a1.id);
        assert.equal(receipt.reader_id, B.id);
        const heard = await java.expect((l) => of('ann', 'messageRead')(l) && l.receipt.message_id === a1.id, 10000, 'Ann hears the receipt');
        assert.deepEqual(heard.receipt, receipt);
        await expectFrom(java.lines.indexOf(bobUnread1) + 1, (l) => of('bob', 'unread')(l) && l.counts.matters[M.id] === 0,
          10000, 'Bob unread 0 after reading');

        // --- delete: Ann deletes a message of hers; Bob hears MessageDeleted, once.
        const oops = await value('ann', 'send', { matter: M.id, message: 'sent by mistake' });
        await java.expect((l) => of('bob', 'messageReceived')(l) && l.message.id === oops.id, 10000, 'Bob receives a2');
        const gone = await value('ann', 'delete', { message: oops.id });
        assert.equal(gone.id, oops.id);
        assert.equal(gone.message, '', 'a deleted message has no text');
        assert.ok(gone.deleted_at, `deleted_at set: ${show(gone)}`);
        const heardGone = await java.expect((l) => of('bob', 'messageDeleted')(l) && l.message.id === oops.id, 10000, 'Bob hears the deletion');
        assert.ok(heardGone.message.deleted_at, show(heardGone));
        assert.deepEqual((await value('ann', 'delete', { message: oops.id })).deleted_at, gone.deleted_at, 'deleting again answers the same');

        // --- typing: Ann → Bob, throttled, then stopped.
        let mark = java.lines.length;
        assert.equal(await value('ann', 'typing', { matter: M.id }), true, 'first typing whisper sent');
        assert.equal(await value('ann', 'typing', { matter: M.id }), false, 'a second one within the throttle is not sent');
        const typing = await expectFrom(mark, (l) => of('bob', 'typing')(l) && l.user === A.id, 10000, 'Bob sees Ann typing');
        assert.deepEqual({ matter: typing.matter, name: typing.name, typing: typing.typing }, { matter: M.id, name: 'Ann', typing: true });
        assert.equal(await value('ann', 'stopTyping', { matter: M.id }), true);
        await expectFrom(mark, (l) => of('bob', 'typing')(l) && l.user === A.id && l.typing === false, 10000, 'Bob sees Ann stop');
        assert.equal(java.lines.slice(mark).filter((l) => of('bob', 'typing')(l) && l.user === A.id && l.typing).length, 1,
          'one typing whisper reached Bob (the throttled one was not sent)');

        // --- presence: who is online in a matter (presence-matter.{id}, members only, user_info {name}).
        java.send({ cmd: 'joinPresence', client: 'ann', matter: M.id });
        await java.expect((l) => of('ann', 'presence')(l) && l.members.length === 1, 10000, 'Ann alone online');
        mark = java.lines.length;
        java.send({ cmd: 'joinPresence', client: 'bob', matter: M.id });
        const both = [{ id: A.id, name: 'Ann' }, { id: B.id, name: 'Bob' }];
        for (const client of ['ann', 'bob']) {
          const p = await expectFrom(mark, (l) => of(client, 'presence')(l) && l.members.length === 2, 10000, `${client} sees both online`);
          assert.deepEqual(p.members, both, `${client}: ${show(p)}`);
        }
        mark = java.lines.length;
        java.send({ cmd: 'leavePresence', client: 'bob', matter: M.id });
        const left = await expectFrom(mark, of('ann', 'presence'), 10000, 'Ann sees Bob leave');
        assert.deepEqual(left.members, [{ id: A.id, name: 'Ann' }]);
        mark = java.lines.length;
        java.send({ cmd: 'joinPresence', client: 'ann', matter: M2.id });
        const deniedP = await expectFrom(mark, of('ann', 'subscriptionError'), 10000, 'Ann refused on presence of M2',
          (l) => of('ann', 'presence')(l) && l.matter === M2.id);
        assert.equal(deniedP.channel, `presence-matter.${M2.id}`);

        // --- the web side: laravel-echo (as the web client uses it) and the Android client whisper to each other.
        const echo = new Echo({
          broadcaster: 'reverb', key: s1.key, wsHost: s1.host, wsPort: s1.port, forceTLS: false,
          enabledTransports: ['ws'], disableStats: true, Pusher: PusherClient,
          authEndpoint: `http://${s1.host}:${s1.port}/api/broadcasting/auth`,
          auth: { headers: { Authorization: `Bearer ${tok[B.id]}` } },
        });
        echos.push(echo);
        await connected(echo.connector.pusher, 8000, 'echo (Bob on the web)');
        const whispers = [];
        let echoOk = false;
        let echoErr = null;
        echo.private(`matter.${M.id}`)
          .listenForWhisper('typing', (e) => whispers.push(e))
          .subscribed(() => { echoOk = true; })
          .error((e) => { echoErr = e; });
        await waitFor(() => {
          if (echoErr) throw new Error(`echo refused: ${show(echoErr)}`);
          return echoOk;
        }, 5000, 'echo subscribed to the matter');
        await value('ann', 'stopTyping', { matter: M.id });
        assert.equal(await value('ann', 'typing', { matter: M.id }), true);
        await waitFor(() => whispers.find((w) => w.typing === true), 5000, 'Echo hears Ann typing');
        assert.deepEqual(whispers.find((w) => w.typing === true), { user_id: A.id, name: 'Ann', typing: true });
        mark = java.lines.length;
        echo.private(`matter.${M.id}`).whisper('typing', { user_id: B.id, name: 'Bob (web)' });
        const fromWeb = await expectFrom(mark, (l) => of('ann', 'typing')(l) && l.user === B.id && l.typing, 10000, 'Ann hears the web typing');
        assert.equal(fromWeb.name, 'Bob (web)');
        echo.disconnect();

        // --- an unknown app key: Pusher's 4001, and the SDK gives up (no reconnect loop).
        await newClient('stranger', A, { key: 'no-such-key' });
        java.send({ cmd: 'connect', client: 'stranger' });
        const e4001 = await java.expect(of('stranger', 'error'), 10000, 'stranger: error');
        assert.equal(e4001.code, '4001', show(e4001));
        await java.expect((l) => of('stranger', 'state')(l) && l.current === 'DISCONNECTED', 10000, 'stranger: DISCONNECTED');
        java.send({ cmd: 'close', client: 'stranger' });

        // --- restart: the server stops; while nothing listens on its port, messages are sent
        // through another server on the same database; then it comes back on the same port.
        mark = java.lines.length;
        const stopped = await s1.stop();
        assert.equal(stopped.code, 0, `s1 exit ${show(stopped)}`);
        for (const client of ['ann', 'bob']) {
          await expectFrom(mark, (l) => of(client, 'state')(l) && l.current === 'RECONNECTING', 15000, `${client} RECONNECTING`);
        }
        // A send while nothing answers: retried with the same key, then a clear error, no crash.
        const offline = await call('ann', 'send', { matter: M.id, message: 'into the void' });
        assert.equal(offline.ok, false, show(offline));
        assert.match(offline.error, /Connect|refused/i, show(offline));
        tmp = await start();
        const missed = [];
        for (let i = 1; i <= 3; i++) missed.push(await restSend(tmp, B, M, `while you were away #${i}`));
        const missed3 = [];
        for (let i = 1; i <= 3; i++) missed3.push(await restSend(tmp, B, M3, `first words #${i}`));
        const all = await ok(tmp, 'GET', `/api/messages?client_matter_id=${M.id}&limit=100`, { token: tok[A.id] });
        assert.ok(!all.data.some((m) => m.message === 'into the void'), 'the failed send stored nothing');
        await tmp.stop();
        s2 = await start(s1.port);

        for (const client of ['ann', 'bob']) {
          await expectFrom(mark, (l) => of(client, 'state')(l) && l.current === 'CONNECTED', 30000, `${client} CONNECTED again`);
        }
        const caught = await expectFrom(mark, (l) => of('ann', 'caughtUp')(l) && l.matter === M.id, 15000, 'Ann caught up',
          (l) => of('ann', 'error')(l) && /catch-up/.test(l.message));
        assert.deepEqual({ count: caught.count, complete: caught.complete }, { count: 3, complete: true }, show(caught));
        // M3 was empty when Ann subscribed: its catch-up pages back from the newest (after_id starts at 1).
        const caught3 = await expectFrom(mark, (l) => of('ann', 'caughtUp')(l) && l.matter === M3.id, 15000, 'Ann caught up M3',
          (l) => of('ann', 'error')(l) && /catch-up/.test(l.message));
        assert.deepEqual({ count: caught3.count, complete: caught3.complete }, { count: 3, complete: true }, show(caught3));
        const after = java.lines.slice(mark).filter(of('ann', 'messageReceived')).map((l) => l.message);
        // Fetched as Ann: unread by her and by anyone (the send answers were Bob's view), and
        // without previous_id (only MessageSent and the send's answer carry it).
        const unreadByAnn = (list) => list.map(({ previous_id: _, ...m }) => ({ ...m, is_read: false, read_at: null, read_by: [] }));
        assert.deepEqual(after.filter((m) => m.client_matter_id === M.id), unreadByAnn(missed),
          'the messages sent to M while the server was away, each once, in order');
        assert.deepEqual(after.filter((m) => m.client_matter_id === M3.id), unreadByAnn(missed3), 'and those sent to M3');
        assert.equal(after.length, 6, `nothing else: ${show(after)}`);
        await expectFrom(mark, (l) => of('ann', 'unread')(l) && l.counts.matters[M.id] === 5, 15000,
          'Ann\'s unread counts refreshed after the reconnect (m1, m2 and the 3 missed)');
        await expectFrom(mark, (l) => of('ann', 'unread')(l) && l.counts.matters[M3.id] === 3 && l.counts.matters[M.id] === 5, 15000,
          'Ann\'s unread counts for M3 too');

        // Live again: one more message arrives once; none of the caught-up ones comes again.
        const live = await restSend(s2, B, M, 'back online');
        await receivedOnceByAnn(live, 'live');
        for (const m of missed) assert.equal(received('ann', m.id).length, 1, `missed message ${m.id} heard once`);
        assert.equal(received('ann', m1.id).length, 1, 'm1 still heard once');

        // Client events and REST work on the new connection.
        await value('ann', 'stopTyping', { matter: M.id });
        mark = java.lines.length;
        assert.equal(await value('ann', 'typing', { matter: M.id }), true);
        await expectFrom(mark, (l) => of('bob', 'typing')(l) && l.user === A.id && l.typing, 10000, 'Bob sees Ann typing after the restart');
        const a2 = await value('ann', 'send', { matter: M.id, message: 'after the restart' });
        await java.expect((l) => of('bob', 'messageReceived')(l) && l.message.id === a2.id, 10000, 'Bob receives a2');

        // Connection refused while the server was away is expected; nothing else.
        const outage = (l) => l.message === 'An exception was thrown by the websocket' && /ConnectException/.test(l.exception);
        const errors = java.lines.filter((l) => l.type === 'unparsable' || (l.type === 'error' && l.client !== 'stranger' && !outage(l)));
        assert.deepEqual(errors, [], 'no errors from the clients');
        const bye = await java.quit(15000, JSON.stringify({ cmd: 'quit' }));
        assert.deepEqual(bye, { code: 0, signal: null }, `exit ${show(bye)}`);
      } catch (err) {
        if (java) console.error(`--- Android client output ---\n${java.report()}`);
        for (const [i, s] of [s1, tmp, s2].entries()) {
          if (s) console.error(`--- parley #${i + 1} output ---\n${s.log().slice(-6000)}`);
        }
        throw err;
      }
    });
});
