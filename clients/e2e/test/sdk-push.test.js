// Push notifications through the RealtimeChat SDK (clients/js) under Node,
// against a real `parley serve` whose FCM endpoint and OAuth token_uri point
// at a small FCM stand-in served here (the Go tests check the protocol
// itself: the signed grant, the bearer, APNs and Web Push).
//
// registerDevice registers Bob's token; while his SDK holds the user channel
// in the foreground a message gives no push; after setAppState('background')
// the next message is pushed with the badge; unregisterDevice removes the
// device. Absence is shown with markers: Bob's GET unread-count is answered
// by his counter after it handled the message before (so its push decision
// is made), and the pushes leave one at a time, in order.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { RealtimeChat } from '@parley/realtime-chat';

import { adminUsers, loginTokens, startParley, waitFor, runAdmin as admin, chatOk as ok } from './helpers.js';
import { fcmServeEnv, fcmStandIn } from './push-helpers.js';

const PASSWORD = 'push-pass-1';

describe('RealtimeChat SDK: push notifications', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-push-'));
  let server;
  let fcm;
  const chats = [];
  let A;
  let B;
  let tok = {};
  let matter;

  const sdk = (u) => {
    const chat = new RealtimeChat({
      wsHost: '127.0.0.1', wsPort: server.port, reverbKey: server.key, forceTLS: false,
      authToken: tok[u.id], userId: u.id, userName: u.name, storage: null,
    });
    chats.push(chat);
    return chat;
  };
  const send = async (text) => (await ok(server.port, 'POST', '/api/messages/send', {
    token: tok[A.id], body: { message: text, client_matter_id: matter.id },
  }, 201)).data;
  // Bob's counter answers after handling every message before: its push decisions are made.
  const settled = () => ok(server.port, 'GET', '/api/messages/unread-count', { token: tok[B.id] });

  before(async () => {
    fcm = await fcmStandIn();
    server = await startParley({ env: fcmServeEnv(fcm, dataDir) });
    [A, B] = await adminUsers(dataDir, 'push.test', PASSWORD, ['Alice', 'Bob']);
    tok = await loginTokens(server.port, [A, B], PASSWORD);
    matter = await admin(dataDir, ['matters', 'create', '--title', 'Pushed', '--members', `${A.id},${B.id}`]);
  });
  after(async () => {
    for (const c of chats) c.disconnect();
    if (server) await server.stop();
    if (fcm) await fcm.close();
  });

  it('pushes to a registered device only while the app is in the background', async () => {
    const bob = sdk(B);
    const alice = sdk(A);
    bob.subscribeToUserChannel();
    bob.subscribeToMatterChannel(matter.id, { presence: false });
    alice.subscribeToMatterChannel(matter.id, { presence: false });
    const typing = [];
    alice.on('onTyping', (e) => typing.push(e));
    await waitFor(() => bob.pusher.channel(`private-user.${B.id}`)?.subscribed && bob.pusher.channel(`private-matter.${matter.id}`)?.subscribed
      && alice.pusher.channel(`private-matter.${matter.id}`)?.subscribed, 10000, 'the channels subscribed');

    const device = await bob.registerDevice({ platform: 'fcm', token: 'bob-phone' });
    assert.equal(device.platform, 'fcm');
    assert.deepEqual((await bob.listDevices()).map((d) => d.token), ['bob-phone']);

    const inForeground = await send('while Bob looks');
    await settled();
    assert.equal(bob.setAppState('background'), true);
    // Bob's socket handles its events in order: his typing reaching Alice means the app
    // state before it was handled.
    bob.typing(matter.id);
    await waitFor(() => typing.some((e) => e.typing), 10000, 'Bob typing at Alice');
    const inBackground = await send('while Bob is away');
    await waitFor(() => fcm.pushes.some((p) => p.messageId === inBackground.id), 15000, 'the push of the second message');
    const p = fcm.pushes.find((x) => x.messageId === inBackground.id);
    assert.equal(p.token, 'bob-phone');
    assert.equal(p.badge, 2);
    assert.equal(p.body, 'Alice: while Bob is away');
    assert.deepEqual(fcm.pushes.filter((x) => x.messageId === inForeground.id), [], 'no push while Bob was in the foreground');

    assert.equal(await bob.unregisterDevice(), true);
    assert.deepEqual(await bob.listDevices(), []);
    assert.equal(bob.appState, 'background');
  });
});
