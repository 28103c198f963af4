// The official Pusher Java/Android client (pusher-websocket-java 2.4.4, what
// Android apps get as com.pusher:pusher-java-client) against a real `parley
// serve`. java/SdkCheck.java drives the SDK and prints what it sees as JSON
// lines; private and presence channels are authorized by the SDK's own
// HttpChannelAuthorizer against a small auth endpoint served here, which signs
// with the `pusher` server SDK as a Laravel backend does. The SDK connects with
// protocol=5, which the server must accept.
//
// Needs a JDK (javac, java), the SDK jars folder given by PARLEY_JAVA_SDK
// (default: the shared sdk/java folder beside the repository)
// and Debian's libgoogle-gson-java and libslf4j-java. Without them the test is
// skipped with a message, except under CI where it fails.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import {
  E2E_DIR, PusherServer, newId, scenario, show, subscribed, useServer,
} from './helpers.js';
import {
  MISSING, SKIP, compileJava, requireJava, runJava,
} from './java-helpers.js';

const SOURCE = path.join(E2E_DIR, 'java', 'SdkCheck.java');

const EVENT = 'java-check';
const USER = { id: 'java-1', info: { name: 'Android phone' } };
const OTHER = { id: 'js-2', info: { name: 'Browser' } };

/**
 * A channel auth endpoint as a Laravel app serves it (/broadcasting/auth):
 * form-encoded socket_id and channel_name in, the `pusher` SDK's signature out.
 */
async function startAuthEndpoint(srv) {
  const signer = new PusherServer({
    appId: srv.appId, key: srv.key, secret: srv.secret, host: srv.host, port: String(srv.port), useTLS: false,
  });
  const requests = [];
  const httpServer = http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size <= 16384) chunks.push(c);
    });
    req.on('end', () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const rec = {
        method: req.method, contentType: req.headers['content-type'],
        socket_id: form.get('socket_id'), channel_name: form.get('channel_name'), status: 0,
      };
      requests.push(rec);
      let status = 200;
      let body;
      try {
        if (req.method !== 'POST' || !rec.socket_id || !rec.channel_name) throw new Error('bad request');
        const presence = rec.channel_name.startsWith('presence-') ? { user_id: USER.id, user_info: USER.info } : undefined;
        body = JSON.stringify(signer.authorizeChannel(rec.socket_id, rec.channel_name, presence));
      } catch (err) {
        status = 403;
        body = JSON.stringify({ message: String(err && err.message) });
      }
      rec.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json', Connection: 'close' });
      res.end(body);
    });
  });
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(0, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${httpServer.address().port}/broadcasting/auth`,
    requests,
    close: () => new Promise((resolve) => {
      httpServer.closeAllConnections();
      httpServer.close(() => resolve());
    }),
  };
}

/** Runs java/SdkCheck; every JSON line it prints is kept in `lines` and emitted as 'line'. */
function runSdkCheck(classDir, args) {
  return runJava(classDir, 'SdkCheck', args);
}

describe('official Pusher Java/Android SDK (pusher-websocket-java)', () => {
  const server = useServer({ before, after });
  let classDir = null;
  let compileError = null;

  before(async () => {
    if (MISSING.length) return;
    try {
      classDir = await compileJava([SOURCE]);
    } catch (err) {
      compileError = err;
    }
  });
  after(() => {
    if (classDir) fs.rmSync(classDir, { recursive: true, force: true });
  });

  it('connects with protocol 5, subscribes to public, private and presence channels, receives triggered events, sees members',
    { timeout: 90000, skip: SKIP }, scenario(server, async (ctx) => {
      requireJava();
      if (compileError) throw compileError;
      const srv = ctx.server;
      const auth = await startAuthEndpoint(srv);
      const channels = {
        public: newId('java-news-'),
        private: newId('private-java-'),
        presence: newId('presence-java-'),
      };
      const java = runSdkCheck(classDir, [
        srv.host, String(srv.port), srv.key, auth.url,
        channels.public, channels.private, channels.presence, EVENT, '60',
      ]);
      try {
        // Connected: a refusal shows up as an error line and DISCONNECTED.
        const up = await java.expect(
          (l) => l.type === 'state' && l.current === 'CONNECTED',
          30000, 'state CONNECTED',
          (l) => (l.type === 'state' && l.current === 'DISCONNECTED' && l.previous !== 'DISCONNECTED') || l.type === 'error',
        );
        assert.match(String(up.socket_id), /^\d+\.\d+$/, `socket id ${show(up.socket_id)}`);

        const failedAuth = (l) => l.type === 'auth_failure' || l.type === 'error'
          || (l.type === 'state' && l.current !== 'CONNECTED' && l.previous === 'CONNECTED');
        for (const name of Object.values(channels)) {
          await java.expect((l) => l.type === 'subscribed' && l.channel === name, 15000, `subscribed to ${name}`, failedAuth);
        }

        // The SDK's HttpChannelAuthorizer asked the auth endpoint, with this socket id.
        for (const name of [channels.private, channels.presence]) {
          const req = auth.requests.find((r) => r.channel_name === name);
          assert.ok(req, `no auth request for ${name}: ${show(auth.requests)}`);
          assert.equal(req.method, 'POST');
          assert.equal(req.socket_id, up.socket_id);
          assert.equal(req.status, 200);
        }
        assert.ok(!auth.requests.some((r) => r.channel_name === channels.public), 'public channels need no auth');

        // Presence: the SDK knows who it is and lists itself.
        const members = await java.expect((l) => l.type === 'members' && l.channel === channels.presence, 5000, 'presence members');
        assert.deepEqual(members.me, USER, `me: ${show(members)}`);
        assert.deepEqual(members.members, [USER], `members: ${show(members)}`);

        // One event on each channel, through the HTTP API with the `pusher` SDK.
        const sdk = ctx.sdk();
        for (const [kind, name] of Object.entries(channels)) {
          const data = { kind, n: newId('m-') };
          const res = await sdk.trigger(name, EVENT, data);
          assert.equal(res.status, 200, `trigger on ${name}`);
          const got = await java.expect((l) => l.type === 'event' && l.channel === name && l.event === EVENT, 10000, `${EVENT} on ${name}`);
          assert.deepEqual(JSON.parse(got.data), data, `${EVENT} data on ${name}`);
        }

        // Another member joins and leaves (pusher-js): the SDK sees both; the HTTP API lists both while present.
        const js = await ctx.pusher({ name: 'js-member', user: OTHER });
        await subscribed(js, channels.presence);
        const added = await java.expect((l) => l.type === 'member_added' && l.channel === channels.presence, 10000, 'member_added');
        assert.deepEqual({ id: added.id, info: added.info }, OTHER);
        const users = await sdk.get({ path: `/channels/${channels.presence}/users` });
        assert.equal(users.status, 200);
        const ids = (await users.json()).users.map((u) => u.id).sort();
        assert.deepEqual(ids, [USER.id, OTHER.id].sort(), 'presence users through the HTTP API');
        js.disconnect();
        const removed = await java.expect((l) => l.type === 'member_removed' && l.channel === channels.presence, 10000, 'member_removed');
        assert.equal(removed.id, OTHER.id);

        // Told to stop: the SDK disconnects cleanly and the program exits 0.
        const bye = await java.quit();
        assert.deepEqual(bye, { code: 0, signal: null }, `exit ${show(bye)}`);
        assert.ok(java.lines.some((l) => l.type === 'state' && l.current === 'DISCONNECTED' && l.previous !== 'CONNECTING'),
          'a DISCONNECTED state after the connection was up');
        assert.ok(!java.lines.some((l) => l.type === 'error' || l.type === 'auth_failure' || l.type === 'unparsable'),
          'no errors from the SDK');
      } catch (err) {
        console.error(`--- Java SDK output ---\n${java.report()}\n--- auth requests ---\n${show(auth.requests)}`);
        throw err;
      } finally {
        await java.quit();
        await auth.close();
      }
    }));
});
