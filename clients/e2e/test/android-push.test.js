// Push notifications through the Android client (clients/android), driven by
// its RealtimeChatDriver against a real `parley serve` whose FCM endpoint is
// the stand-in of push-helpers.js: registerDevice(fcmToken), setAppState,
// setMatterMuted and unregisterDevice. Absence is shown with markers: Bob's
// unread count is answered by his counter after it handled the message
// before, and pushes leave one at a time, in order.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { adminUsers, loginTokens, startParley, runAdmin as admin, chatOk as ok, waitFor } from './helpers.js';
import {
  ANDROID_DRIVER, MISSING, SKIP, compileAndroid, driverRequests, requireJava, runJava,
} from './java-helpers.js';
import { fcmServeEnv, fcmStandIn } from './push-helpers.js';

const PASSWORD = 'android-push-1';

describe('Android client: push notifications', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-android-push-'));
  let classDir = null;
  let compileError = null;
  let java = null;
  let server = null;
  let fcm = null;

  before(async () => {
    if (MISSING.length) return;
    ({ classDir, compileError } = await compileAndroid());
  });
  after(async () => {
    if (java) await java.quit();
    if (server) await server.stop();
    if (fcm) await fcm.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
    if (classDir) fs.rmSync(classDir, { recursive: true, force: true });
  });

  it('registers the FCM token and gets pushes only in the background and unmuted', { timeout: 120000, skip: SKIP }, async () => {
    requireJava();
    if (compileError) throw compileError;
    fcm = await fcmStandIn();
    server = await startParley({ env: fcmServeEnv(fcm, dataDir) });
    const [A, B] = await adminUsers(dataDir, 'android-push.test', PASSWORD, ['Ann', 'Bob']);
    const M = await admin(dataDir, ['matters', 'create', '--title', 'Phone', '--members', `${A.id},${B.id}`]);
    const tok = await loginTokens(server.port, [A, B], PASSWORD);
    const send = async (text) => (await ok(server.port, 'POST', '/api/messages/send', { token: tok[A.id], body: { message: text, client_matter_id: M.id } }, 201)).data;
    const settled = () => ok(server.port, 'GET', '/api/messages/unread-count', { token: tok[B.id] });
    const pushOf = (id) => fcm.pushes.filter((p) => p.messageId === id);

    java = runJava(classDir, ANDROID_DRIVER);
    const { value } = driverRequests(() => java, 'r');
    for (const [client, u] of [['ann', A], ['bob', B]]) {
      await value(client, 'new', { host: server.host, port: server.port, key: server.key, token: tok[u.id], userId: u.id, userName: u.name,
        apiBaseUrl: `http://${server.host}:${server.port}/api`, typingThrottleMillis: 0 });
      java.send({ cmd: 'subscribeUser', client });
      java.send({ cmd: 'subscribeMatter', client, matter: M.id });
      for (const ch of [`private-user.${u.id}`, `private-matter.${M.id}`]) {
        await java.expect((l) => l.client === client && l.type === 'subscribed' && l.channel === ch, 20000, `${client} subscribed to ${ch}`);
      }
    }
    const deviceId = await value('bob', 'registerDevice', { token: 'bob-android' });
    assert.ok(deviceId > 0);

    // Foreground: no push. Background (then Bob's typing reaches Ann: his state was handled): pushed.
    const fg = await send('while Bob looks');
    await settled();
    assert.equal(await value('bob', 'appState', { background: true }), true);
    const from = java.lines.length;
    await value('bob', 'typing', { matter: M.id });
    await java.expect((l) => java.lines.indexOf(l) >= from && l.client === 'ann' && l.type === 'typing', 10000, 'Bob typing at Ann');
    const bg = await send('while Bob is away');
    await waitFor(() => pushOf(bg.id).length === 1, 15000, 'the push of the background message');
    assert.equal(pushOf(bg.id)[0].token, 'bob-android');
    assert.equal(pushOf(bg.id)[0].badge, 2);
    assert.deepEqual(pushOf(fg.id), [], 'no push while in the foreground');

    // Muted: no push; unmuted again, the next message is pushed and comes first.
    await value('bob', 'mute', { matter: M.id, muted: true });
    const muted = await send('muted');
    await settled();
    await value('bob', 'mute', { matter: M.id, muted: false });
    const unmuted = await send('unmuted');
    await waitFor(() => pushOf(unmuted.id).length === 1, 15000, 'the push after unmuting');
    assert.deepEqual(pushOf(muted.id), [], 'no push of the muted message');
    assert.equal(pushOf(unmuted.id)[0].badge, 4);

    assert.equal(await value('bob', 'unregisterDevice'), true);
    const devices = (await ok(server.port, 'GET', '/api/devices', { token: tok[B.id] })).data;
    assert.deepEqual(devices, []);
  });
});
