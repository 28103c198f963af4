// Chat state survives a restart: a server is stopped with SIGTERM (exit 0)
// and a new one is started on the SAME data directory; history, read state,
// unread counts and login tokens are all still there, and the realtime side
// works again with the old token.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  Echo,
  PusherClient,
  connected,
  show,
  startParley,
  waitFor,
  runAdmin as admin,
  chatApi as api,
  chatOk as ok,
} from './helpers.js';

const PASSWORD = 'restart-pass-1';

describe('restart on the same data directory', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-restart-'));
  const servers = [];
  const echos = [];
  after(async () => {
    for (const e of echos) {
      try {
        e.disconnect();
      } catch {
        /* ignore */
      }
    }
    for (const s of servers) await s.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('history, read state, unread counts and tokens survive SIGTERM + start', { timeout: 60000 }, async () => {
    const start = async () => {
      const s = await startParley({ env: { PARLEY_DATA_DIR: dataDir } });
      servers.push(s);
      return s;
    };
    let s1;
    let s2;
    try {
      s1 = await start();

      const mk = (name) => admin(dataDir, ['users', 'create', '--name', name, '--email', `${name.toLowerCase()}@restart.test`, '--password', PASSWORD]);
      const A = await mk('Ada');
      const B = await mk('Ben');
      const C = await mk('Cy');
      const M1 = await admin(dataDir, ['matters', 'create', '--title', 'Estate of Ada']);
      const M2 = await admin(dataDir, ['matters', 'create', '--title', 'Merger review']);
      for (const [m, u] of [[M1, A], [M1, B], [M2, A], [M2, B], [M2, C]]) {
        await admin(dataDir, ['matters', 'add-member', '--matter', String(m.id), '--user', String(u.id)]);
      }
      const tok = {};
      for (const u of [A, B, C]) {
        tok[u.id] = (await ok(s1, 'POST', '/api/auth/login', { body: { email: u.email, password: PASSWORD } })).token;
      }
      const send = async (s, u, m, text) => (await ok(s, 'POST', '/api/messages/send',
        { token: tok[u.id], body: { message: text, client_matter_id: m.id } }, 201)).data;
      const read = async (s, u, msg) => (await ok(s, 'PUT', `/api/messages/${msg.id}/read`, { token: tok[u.id] })).data;

      const a1 = [];
      for (let i = 1; i <= 4; i++) a1.push(await send(s1, A, M1, `Ada to M1 #${i}`));
      const b1 = await send(s1, B, M1, 'Ben to M1');
      const a2 = [await send(s1, A, M2, 'Ada to M2 #1'), await send(s1, A, M2, 'Ada to M2 #2 — ünïcødé ✓')];
      const c2 = await send(s1, C, M2, 'Cy to M2');

      const receipts = [
        { by: B, msg: a1[0] }, { by: B, msg: a1[1] }, { by: B, msg: a2[0] }, { by: A, msg: b1 }, { by: C, msg: a2[1] },
      ];
      for (const r of receipts) r.data = await read(s1, r.by, r.msg);

      // The state everyone sees, before.
      const snapshot = async (s) => {
        const out = {};
        for (const u of [A, B, C]) {
          out[u.name] = {
            user: await ok(s, 'GET', '/api/user', { token: tok[u.id] }),
            unread: await ok(s, 'GET', '/api/messages/unread-count', { token: tok[u.id] }),
            matters: await ok(s, 'GET', '/api/matters', { token: tok[u.id] }),
          };
        }
        out.history = {
          M1: await ok(s, 'GET', `/api/messages?client_matter_id=${M1.id}&limit=100`, { token: tok[A.id] }),
          M2: await ok(s, 'GET', `/api/messages?client_matter_id=${M2.id}&limit=100`, { token: tok[C.id] }),
        };
        return out;
      };
      const before = await snapshot(s1);

      // What the state must be (not only "the same as before").
      const key = (m) => String(m.id);
      assert.deepEqual(before.Ben.unread, { user_id: B.id, unread_count: 4, matters: { [key(M1)]: 2, [key(M2)]: 2 } });
      assert.deepEqual(before.Ada.unread, { user_id: A.id, unread_count: 1, matters: { [key(M1)]: 0, [key(M2)]: 1 } });
      assert.deepEqual(before.Cy.unread, { user_id: C.id, unread_count: 1, matters: { [key(M2)]: 1 } });
      // Most recent activity first: M2's last message came after M1's.
      assert.deepEqual(before.Ben.matters.data.map((m) => [m.id, m.unread_count, m.last_message.id]), [[M2.id, 2, c2.id], [M1.id, 2, b1.id]]);
      // Without the reader's state, and without previous_id (in the send's answer only).
      const unread = ({ is_read, read_at, read_by, previous_id, ...rest }) => rest;
      assert.deepEqual(before.history.M1.data.map(unread), [b1, ...a1].sort((x, y) => y.id - x.id).map(unread), 'M1 newest first');
      assert.deepEqual(before.history.M2.data.map(unread), [c2, ...a2].sort((x, y) => y.id - x.id).map(unread), 'M2 newest first');
      // The read ticks, as Ada sees M1: who read her messages, and what she read.
      const seen = (id) => before.history.M1.data.find((m) => m.id === id);
      const tick = (r) => ({ user_id: r.by.id, read_at: r.data.read_at });
      assert.deepEqual([seen(a1[0].id).read_by, seen(a1[1].id).read_by, seen(a1[2].id).read_by], [[tick(receipts[0])], [tick(receipts[1])], []]);
      assert.deepEqual([seen(a1[0].id).read_at, seen(a1[2].id).read_at], [receipts[0].data.read_at, null]);
      assert.deepEqual([seen(b1.id).is_read, seen(b1.id).read_at], [true, receipts[3].data.read_at]);

      // Orderly stop.
      const res = await s1.stop();
      assert.equal(res.killed, false, 'parley had to be SIGKILLed');
      assert.equal(res.signal, null, `parley died of signal ${res.signal}`);
      assert.equal(res.code, 0, `exit code after SIGTERM (output:\n${s1.log().slice(-3000)})`);

      // A new process on the same data directory.
      s2 = await start();
      assert.notEqual(s2.child.pid, s1.child.pid);
      const afterRestart = await snapshot(s2);
      assert.deepEqual(afterRestart, before, 'users, unread counts, matters and history after the restart');

      // Read state: repeating a read answers the receipt stored before the restart.
      for (const r of receipts) {
        assert.deepEqual(await read(s2, r.by, r.msg), r.data, `receipt of message ${r.msg.id} by ${r.by.name}`);
      }
      assert.deepEqual(await ok(s2, 'GET', '/api/messages/unread-count', { token: tok[B.id] }), before.Ben.unread,
        'repeated reads change no count');

      // The old token also authorizes channels on the new server, and the counters go on from the stored state.
      const echo = new Echo({
        broadcaster: 'reverb', key: s2.key, wsHost: s2.host, wsPort: s2.port, forceTLS: false,
        enabledTransports: ['ws'], disableStats: true, Pusher: PusherClient,
        authEndpoint: `http://${s2.host}:${s2.port}/api/broadcasting/auth`,
        auth: { headers: { Authorization: `Bearer ${tok[B.id]}` } },
      });
      echos.push(echo);
      await connected(echo.connector.pusher, 8000, 'ben after restart');
      const sent = [];
      const counts = [];
      let subErr = null;
      let subOk = false;
      echo.private(`user.${B.id}`)
        .listen('MessageSent', (e) => sent.push(e.message))
        .listen('UnreadCountUpdated', (e) => counts.push(e))
        .subscribed(() => { subOk = true; })
        .error((e) => { subErr = e; });
      await waitFor(() => {
        if (subErr) throw new Error(`subscription refused with the old token: ${show(subErr)}`);
        return subOk;
      }, 5000, 'private-user subscription with the old token');
      const fresh = await send(s2, A, M1, 'after the restart');
      assert.ok(fresh.id > Math.max(...a1.map((m) => m.id), b1.id, c2.id), 'ids keep increasing');
      await waitFor(() => sent.find((m) => m.id === fresh.id), 5000, 'MessageSent after the restart');
      await waitFor(() => counts.find((c) => c.unread_count === 5), 5000, 'UnreadCountUpdated 4 -> 5');
      assert.deepEqual(counts.find((c) => c.unread_count === 5),
        { user_id: B.id, unread_count: 5, matters: { [key(M1)]: 3, [key(M2)]: 2 } });
    } catch (err) {
      for (const [i, s] of [s1, s2].entries()) {
        if (s) console.error(`--- parley #${i + 1} output ---\n${s.log().slice(-6000)}`);
      }
      throw err;
    }
  });
});
