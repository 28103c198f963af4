// Three Parley nodes in one cluster on 127.0.0.1, sharing one fresh
// PostgreSQL database, driven by the real clients: pusher-js and
// laravel-echo connect to different nodes, the `pusher` server SDK publishes
// and queries through any node, and the chat's REST API is called on every
// node.
//
// Absence is never asserted with a sleep: after the thing that must not
// happen, a marker is sent along the same path and the marker must be the
// next thing seen.
//
// Needs PostgreSQL (PARLEY_TEST_DATABASE_URL, default the `test` database on
// 127.0.0.1:5432) and psql: skipped without them, failed under CI.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  chatEcho, newId, show, sleep, subscribed, subscribedVia, waitFor,
} from './helpers.js';
import {
  PASSWORD,
  UNDER_CI,
  admin,
  api,
  clusterScenario,
  eventually,
  expectStatus,
  freshDatabase,
  login,
  sdkGet,
  sendMessage,
  startCluster,
  stopAll,
  unreadCount,
  unreadSQL,
} from './cluster-helpers.js';

const T = { timeout: 30000 };

const parsed = (d) => (typeof d === 'string' ? JSON.parse(d) : d);
const sorted = (xs) => [...xs].sort();
// A REST message object as events carry it: no one's read state (docs/chat-api.md, "Events").
const asEvent = (m) => ({ ...m, is_read: m.deleted_at != null, read_at: null, read_by: [] });

/** Presence frames a tracked client received on a channel, in order: ['+id', '-id', ...]. */
function presenceLog(rec, channel) {
  const out = [];
  for (const f of rec.frames) {
    if (f.dir !== 'in' || f.channel !== channel) continue;
    if (f.event === 'pusher_internal:member_added') out.push(`+${parsed(f.data).user_id}`);
    if (f.event === 'pusher_internal:member_removed') out.push(`-${parsed(f.data).user_id}`);
  }
  return out;
}

/** The `presence` object of the subscription_succeeded a tracked client received on a channel. */
function succeeded(rec, channel) {
  const f = rec.frames.find((x) => x.dir === 'in' && x.channel === channel
    && x.event === 'pusher_internal:subscription_succeeded');
  return f ? parsed(f.data).presence : null;
}

describe('cluster: three nodes, one shared PostgreSQL database', () => {
  let db = null;
  let nodes = null;
  let skipReason = null;
  let startError = null;
  const fx = {}; // chat fixtures: users A, B, C, D and matter M, from the admin commands

  before(async () => {
    try {
      db = await freshDatabase();
    } catch (err) {
      if (UNDER_CI) startError = err;
      else skipReason = `PostgreSQL is not reachable through psql (${err.message.split('\n')[0]})`;
      return;
    }
    try {
      nodes = await startCluster({ n: 3, databaseUrl: db.url });
      const mk = (name) => admin(db.url, ['users', 'create', '--name', name, '--email', `${name.toLowerCase()}@cluster.test`, '--password', PASSWORD]);
      for (const name of ['Alice', 'Bob', 'Carol', 'Dave']) fx[name[0]] = await mk(name);
      fx.M = await admin(db.url, ['matters', 'create', '--title', 'Cluster v. Node']);
      for (const u of [fx.A, fx.B, fx.C, fx.D]) {
        await admin(db.url, ['matters', 'add-member', '--matter', String(fx.M.id), '--user', String(u.id)]);
      }
    } catch (err) {
      startError = err;
    }
  });

  after(async () => {
    if (nodes) await stopAll(nodes);
    if (db) await db.drop();
  });

  const cluster = (t) => {
    if (skipReason) {
      t.skip(skipReason);
      return null;
    }
    if (startError) throw startError;
    return nodes;
  };

  it('a publish through node 1 reaches subscribers on every node once; socket_id excludes a socket on node 3', T, clusterScenario(cluster, async (ctxs) => {
    const ch = newId('cl-pub-');
    const other = newId('cl-pub-other-');
    const homes = { 'a@1': 0, 'b@2': 1, 'c@3': 2, 'd@3': 2 };
    const names = Object.keys(homes);
    const got = {};
    const clients = {};
    for (const name of names) {
      clients[name] = await ctxs[homes[name]].pusher({ name });
      got[name] = [];
      (await subscribed(clients[name], ch)).bind('news', (d) => got[name].push(d.n));
    }
    // b@2 is on a second channel too: a trigger to both gives it one event per channel.
    const gotOther = [];
    (await subscribed(clients['b@2'], other)).bind('news', (d) => gotOther.push(d.n));

    const sdk1 = ctxs[0].sdk();
    await sdk1.trigger([ch, other], 'news', { n: 1 });
    await waitFor(() => names.every((n) => got[n].length >= 1) && gotOther.length >= 1, 5000, 'event 1 on every node');

    // Exclude c@3, a socket on node 3, from a trigger through node 1.
    await sdk1.trigger(ch, 'news', { n: 2 }, { socket_id: clients['c@3'].connection.socket_id });
    // The marker, along the same path.
    await sdk1.trigger([ch, other], 'news', { n: 3 });
    await waitFor(() => names.every((n) => got[n].includes(3)) && gotOther.includes(3), 5000, 'the marker on every node');

    assert.deepEqual(got['a@1'], [1, 2, 3]);
    assert.deepEqual(got['b@2'], [1, 2, 3]);
    assert.deepEqual(got['d@3'], [1, 2, 3], 'the other socket on node 3 still gets the event');
    assert.deepEqual(got['c@3'], [1, 3], 'the socket_id on node 3 is left out');
    assert.deepEqual(gotOther, [1, 3]);
  }));

  it('presence across nodes: member lists, member_added/removed, a user on two nodes counted once, the users API on every node', T, clusterScenario(cluster, async (ctxs) => {
    const ch = newId('presence-x-');
    const tag = newId('');
    const [u1, u2, u3, u4, u5] = [1, 2, 3, 4, 5].map((k) => ({ id: `${tag}-u${k}`, info: { name: `User ${k}` } }));
    const sdks = ctxs.map((ctx) => ctx.sdk());
    const rec = (ctx, p) => ctx.clients.find((c) => c.pusher === p);
    const has = (channel, ...users) => users.every((u) => channel.members.get(u.id) !== null);
    const lacks = (channel, ...users) => users.every((u) => channel.members.get(u.id) === null);
    const log = (ctx, p, ...only) => presenceLog(rec(ctx, p), ch)
      .filter((e) => only.length === 0 || only.some((u) => e.slice(1) === u.id));
    const usersEverywhere = async (want, label) => {
      const ids = sorted(want.map((u) => u.id));
      let lists;
      await eventually(async () => {
        lists = await Promise.all(sdks.map((sdk) => sdkGet(sdk, `/channels/${ch}/users`)));
        return lists.every((l) => show(l.users.map((u) => u.id).sort()) === show(ids));
      }, 8000, `${label}: /channels/${ch}/users to list ${show(ids)} on nodes 1, 2 and 3`);
      for (const l of lists) assert.deepEqual(l, { users: ids.map((id) => ({ id })) }, `${label}: each user once`);
    };

    // u3 on node 3 first; u1 joins on node 1 and u2 on node 2.
    const p3 = await ctxs[2].pusher({ name: 'u3@3', user: u3 });
    const ch3 = await subscribed(p3, ch);
    const p1 = await ctxs[0].pusher({ name: 'u1@1', user: u1 });
    const ch1 = await subscribed(p1, ch);
    await waitFor(() => has(ch3, u1), 5000, 'member_added(u1 of node 1) at node 3');
    const p2 = await ctxs[1].pusher({ name: 'u2@2', user: u2 });
    const ch2 = await subscribed(p2, ch);
    await waitFor(() => has(ch3, u2) && has(ch1, u2, u3) && has(ch2, u1, u3), 5000, 'every member at every node');
    assert.deepEqual(ch3.members.members[u1.id], u1.info, 'user_info crosses nodes');
    assert.deepEqual(ch3.members.members[u2.id], u2.info, 'user_info crosses nodes');

    // A newcomer on node 3 gets the members of nodes 1 and 2 in subscription_succeeded.
    const p4 = await ctxs[2].pusher({ name: 'u4@3', user: u4 });
    const ch4 = await subscribed(p4, ch);
    const list4 = succeeded(rec(ctxs[2], p4), ch);
    assert.deepEqual(sorted(list4.ids), sorted([u1.id, u2.id, u3.id, u4.id]), `subscription_succeeded on node 3: ${show(list4)}`);
    assert.equal(list4.count, 4);
    assert.deepEqual(list4.hash[u1.id], u1.info);
    assert.deepEqual(list4.hash[u2.id], u2.info);
    await waitFor(() => has(ch1, u4) && has(ch2, u4) && has(ch3, u4), 5000, 'member_added(u4) everywhere');
    await usersEverywhere([u1, u2, u3, u4], 'four members');

    // u2 opens a second socket, on node 1: still one member, announced to nobody.
    const p2b = await ctxs[0].pusher({ name: 'u2b@1', user: u2 });
    const ch2b = await subscribed(p2b, ch);
    const list2b = succeeded(rec(ctxs[0], p2b), ch);
    assert.deepEqual(sorted(list2b.ids), sorted([u1.id, u2.id, u3.id, u4.id]), `u2's second socket: ${show(list2b)}`);
    assert.equal(list2b.count, 4);
    // Marker: u5 joins on node 1, the node that would announce u2 again.
    const p5 = await ctxs[0].pusher({ name: 'u5@1', user: u5 });
    const ch5 = await subscribed(p5, ch);
    await waitFor(() => has(ch1, u5) && has(ch2, u5) && has(ch3, u5) && has(ch4, u5) && has(ch2b, u5), 5000,
      'member_added(u5) everywhere');
    assert.deepEqual(log(ctxs[2], p3), [`+${u1.id}`, `+${u2.id}`, `+${u4.id}`, `+${u5.id}`], 'u3 on node 3');
    assert.deepEqual(log(ctxs[2], p4), [`+${u5.id}`], 'u4 on node 3');
    assert.deepEqual(log(ctxs[1], p2, u2, u4, u5), [`+${u4.id}`, `+${u5.id}`], 'u2 on node 2');
    assert.deepEqual(log(ctxs[0], p1, u2, u4, u5), [`+${u2.id}`, `+${u4.id}`, `+${u5.id}`], 'u1 on node 1');
    assert.equal(ch5.members.count, 5);
    await usersEverywhere([u1, u2, u3, u4, u5], 'u2 on two nodes counted once');

    // u2 leaves node 1 but stays on node 2: nobody sees member_removed(u2).
    p2b.disconnect();
    await eventually(async () => (await sdkGet(sdks[0], `/channels/${ch}`, { info: 'subscription_count' })).subscription_count === 5,
      8000, 'the cluster to count 5 subscriptions once u2 left node 1');
    // Marker: u5 leaves node 1 too.
    p5.disconnect();
    await waitFor(() => lacks(ch1, u5) && lacks(ch2, u5) && lacks(ch3, u5) && lacks(ch4, u5), 5000, 'member_removed(u5) everywhere');
    assert.deepEqual(log(ctxs[2], p3), [`+${u1.id}`, `+${u2.id}`, `+${u4.id}`, `+${u5.id}`, `-${u5.id}`], 'u3 on node 3');
    assert.deepEqual(log(ctxs[2], p4), [`+${u5.id}`, `-${u5.id}`], 'u4 on node 3');
    assert.deepEqual(log(ctxs[1], p2, u2, u4, u5), [`+${u4.id}`, `+${u5.id}`, `-${u5.id}`], 'u2 on node 2');
    assert.deepEqual(log(ctxs[0], p1, u2, u4, u5), [`+${u2.id}`, `+${u4.id}`, `+${u5.id}`, `-${u5.id}`], 'u1 on node 1');
    await usersEverywhere([u1, u2, u3, u4], 'u2 still present through node 2');

    // u2's last socket, on node 2, goes: member_removed(u2) on nodes 1 and 3.
    p2.disconnect();
    await waitFor(() => lacks(ch1, u2) && lacks(ch3, u2) && lacks(ch4, u2), 5000, 'member_removed(u2) at nodes 1 and 3');
    assert.deepEqual(log(ctxs[2], p3).slice(-2), [`-${u5.id}`, `-${u2.id}`], 'u3 on node 3');
    assert.deepEqual(log(ctxs[0], p1, u2), [`+${u2.id}`, `-${u2.id}`], 'u1 on node 1');
    await usersEverywhere([u1, u3, u4], 'after u2 left');
  }));

  it('chat: a send through node 2 reaches Echo on node 3; 3 users x 10 concurrent sends through nodes 1-3 leave the unread count equal to the API and the database', T, clusterScenario(cluster, async (ctxs) => {
    const { A, B, C, D, M } = fx;
    const [n1, n2, n3] = nodes;
    const mid = String(M.id);
    const tokenA = await login(n2, A);
    const tokenB = await login(n3, B);
    const tokenC = await login(n1, C);
    const tokenD = await login(n3, D);

    // Bob: laravel-echo on node 3, authorized by node 3's /api/broadcasting/auth.
    const echoB = await chatEcho(ctxs[2], tokenB, 'bob@3');
    const onUser = [];
    const onMatter = [];
    const counts = [];
    const receipts = [];
    const userCh = echoB.private(`user.${B.id}`)
      .listen('MessageSent', (e) => onUser.push(e.message))
      .listen('UnreadCountUpdated', (e) => counts.push(e));
    const matterCh = echoB.private(`matter.${M.id}`)
      .listen('MessageSent', (e) => onMatter.push(e.message))
      .listen('MessageReceived', (e) => receipts.push(e));
    await subscribedVia(userCh, `private-user.${B.id}`);
    await subscribedVia(matterCh, `private-matter.${M.id}`);

    const start = await unreadCount(n3, tokenB);
    assert.deepEqual(start, { user_id: B.id, unread_count: 0, matters: { [mid]: 0 } });

    // Alice sends through node 2.
    const first = await sendMessage(n2, tokenA, M.id, 'Hearing moved to Tuesday.');
    await waitFor(() => onUser.length >= 1 && onMatter.length >= 1, 5000, 'MessageSent at Bob on node 3');
    // The REST answer is the sender's view; events carry no one's read state.
    assert.deepEqual(onUser[0], asEvent(first), 'MessageSent on private-user.B is the REST answer');
    assert.deepEqual(onMatter[0], asEvent(first), 'MessageSent on private-matter.M is the REST answer');
    await waitFor(() => counts.length >= 1, 5000, 'UnreadCountUpdated at Bob on node 3');
    assert.deepEqual(counts[0], { user_id: B.id, unread_count: 1, matters: { [mid]: 1 } });

    // Three senders, ten messages each, through nodes 1, 2 and 3 at the same time.
    const senders = [[n1, tokenA, 'A'], [n2, tokenC, 'C'], [n3, tokenD, 'D']];
    const batches = await Promise.all(senders.map(async ([node, token, who]) => {
      const out = [];
      for (let i = 0; i < 10; i += 1) out.push(await sendMessage(node, token, M.id, `${who} ${i} via node ${node.index}`));
      return out;
    }));
    const sent = [first, ...batches.flat()];
    const ids = sorted(sent.map((m) => m.id));
    assert.equal(new Set(ids).size, 31);

    await waitFor(() => onUser.length >= 31 && onMatter.length >= 31, 15000, 'the 31 MessageSent on both channels at Bob');
    await waitFor(() => counts.some((c) => c.matters[mid] === 31), 15000, 'UnreadCountUpdated at 31');
    const sql = unreadSQL([M.id], B.id);
    assert.equal(Number(await db.query(sql)), 31, 'the database counts 31 unread for Bob');
    for (const node of nodes) {
      assert.deepEqual(await unreadCount(node, tokenB), { user_id: B.id, unread_count: 31, matters: { [mid]: 31 } },
        `GET /api/messages/unread-count on node ${node.index}`);
    }
    assert.deepEqual(counts.at(-1), { user_id: B.id, unread_count: 31, matters: { [mid]: 31 } }, 'the last UnreadCountUpdated so far');

    // Marker: Bob reads the first message through node 1; the count goes to 30
    // and a receipt goes out on private-matter.M. Nothing stale may come between.
    const at31 = counts.findIndex((c) => c.matters[mid] === 31);
    const res = await api(n1, 'PUT', `/api/messages/${first.id}/read`, { token: tokenB });
    expectStatus(res, 200, 'Bob reads the first message on node 1');
    await waitFor(() => counts.slice(at31).some((c) => c.matters[mid] === 30), 5000, 'UnreadCountUpdated at 30 after the read');
    await waitFor(() => receipts.some((r) => r.message_id === first.id), 5000, 'MessageReceived on private-matter.M');
    const seq = counts.map((c) => c.matters[mid]);
    assert.deepEqual(seq.slice(at31).filter((n) => n !== 31), [30], `no stale count after 31: ${show(seq)}`);
    assert.deepEqual(counts.at(-1), { user_id: B.id, unread_count: 30, matters: { [mid]: 30 } });
    for (let i = 1; i < at31; i += 1) assert.ok(seq[i] >= seq[i - 1], `counts never go back while nobody reads: ${show(seq)}`);
    assert.equal(Number(await db.query(sql)), 30);
    assert.deepEqual(await unreadCount(n2, tokenB), counts.at(-1), 'GET on node 2 after the read');

    // Every message once on each channel, as its send answered it.
    const byId = new Map(sent.map((m) => [m.id, m]));
    for (const [label, list] of [['private-user.B', onUser], ['private-matter.M', onMatter]]) {
      assert.deepEqual(sorted(list.map((m) => m.id)), ids, `${label}: each of the 31 messages once`);
      for (const m of list) assert.deepEqual(m, asEvent(byId.get(m.id)), `${label}: message ${m.id} as sent`);
    }
  }));

  it('kill -9 of node 2 while nodes 1 and 3 publish in turn: their subscribers lose nothing', T, clusterScenario(cluster, async (ctxs) => {
    const ch = newId('cl-loop-');
    const N = 100;
    const KILL_AT = 30;
    const seen = {};
    for (const [name, at] of [['x@1', 0], ['y@1', 0], ['x@3', 2], ['y@3', 2], ['doomed@2', 1]]) {
      const p = await ctxs[at].pusher({ name });
      seen[name] = [];
      (await subscribed(p, ch)).bind('tick', (d) => seen[name].push(d.i));
    }
    const survivors = ['x@1', 'y@1', 'x@3', 'y@3'];
    const sdk1 = ctxs[0].sdk();
    const sdk3 = ctxs[2].sdk();

    // Presence: a member whose only socket is on node 2, watched from node 3.
    const pch = newId('presence-kill-');
    const dead = { id: newId('dead-'), info: { name: 'on node 2' } };
    const alive = { id: newId('alive-'), info: { name: 'on node 3' } };
    const watcher = await subscribed(await ctxs[2].pusher({ name: 'watcher@3', user: alive }), pch);
    await subscribed(await ctxs[1].pusher({ name: 'member@2', user: dead }), pch);
    await waitFor(() => watcher.members.get(dead.id) !== null, 5000, 'member_added(node 2 member) at node 3');

    let slowest = 0;
    for (let i = 0; i < N; i += 1) {
      if (i === KILL_AT) {
        await waitFor(() => seen['doomed@2'].length >= 1, 5000, 'node 2 delivering before the kill');
        nodes[1].child.kill('SIGKILL');
      }
      const t0 = Date.now();
      await (i % 2 === 0 ? sdk1 : sdk3).trigger(ch, 'tick', { i });
      slowest = Math.max(slowest, Date.now() - t0);
      await sleep(20); // pacing, so the loop spans the moment the others notice the death
    }
    assert.equal((await nodes[1].exited).signal, 'SIGKILL');

    await waitFor(() => survivors.every((s) => new Set(seen[s]).size === N), 10000, `all ${N} ticks at nodes 1 and 3`);
    // Markers through both publishing nodes, then: each tick exactly once.
    await sdk1.trigger(ch, 'tick', { i: 'end1' });
    await sdk3.trigger(ch, 'tick', { i: 'end3' });
    await waitFor(() => survivors.every((s) => seen[s].includes('end1') && seen[s].includes('end3')), 5000, 'the markers');
    const want = Array.from({ length: N }, (_, i) => i);
    for (const s of survivors) {
      const ticks = seen[s].filter((x) => typeof x === 'number');
      assert.deepEqual([...ticks].sort((a, b) => a - b), want, `${s}: every tick once`);
      // Each publishing node's ticks arrive in the order it published them.
      for (const parity of [0, 1]) {
        const mine = ticks.filter((x) => x % 2 === parity);
        assert.deepEqual(mine, [...mine].sort((a, b) => a - b), `${s}: node ${parity ? 3 : 1}'s ticks in order`);
      }
    }

    // The survivors answer channel queries without the dead node.
    await eventually(async () => {
      const info = await sdkGet(sdk1, `/channels/${ch}`, { info: 'subscription_count' });
      return info.occupied === true && info.subscription_count === 4;
    }, 10000, 'node 1 to count the 4 surviving subscriptions');
    const info3 = await sdkGet(sdk3, `/channels/${ch}`, { info: 'subscription_count' });
    assert.equal(info3.subscription_count, 4);

    // The dead node's presence member is removed on the survivors.
    await waitFor(() => watcher.members.get(dead.id) === null, 10000, 'member_removed(node 2 member) at node 3');
    for (const sdk of [sdk1, sdk3]) {
      await eventually(async () => show(await sdkGet(sdk, `/channels/${pch}/users`)) === show({ users: [{ id: alive.id }] }),
        10000, `${pch} users without the dead node's member`);
    }
    console.log(`# kill -9: slowest trigger during the publish loop ${slowest} ms`);
  }));

  it('with node 2 killed, chat through nodes 1 and 3: Echo events and every member\'s unread count equal the database', T, clusterScenario(cluster, async (ctxs) => {
    const { A, B, C, D, M } = fx;
    const [n1, n2, n3] = nodes;
    if (!n2.exitInfo) {
      n2.child.kill('SIGKILL');
      await n2.exited;
    }
    const mid = String(M.id);
    const tokens = new Map();
    for (const u of [A, B, C, D]) tokens.set(u, await login(u === B ? n3 : n1, u));

    const echoB = await chatEcho(ctxs[2], tokens.get(B), 'bob@3');
    const onMatter = [];
    const counts = [];
    const userCh = echoB.private(`user.${B.id}`).listen('UnreadCountUpdated', (e) => counts.push(e));
    const matterCh = echoB.private(`matter.${M.id}`).listen('MessageSent', (e) => onMatter.push(e.message));
    await subscribedVia(userCh, `private-user.${B.id}`);
    await subscribedVia(matterCh, `private-matter.${M.id}`);

    // Each member's unread counter lives on one node; some lived on node 2.
    // Every count must still come right, through either survivor.
    const msg = await sendMessage(n1, tokens.get(A), M.id, 'after node 2 died');
    await waitFor(() => onMatter.some((m) => m.id === msg.id), 5000, 'MessageSent at Bob on node 3');
    const wantB = Number(await db.query(unreadSQL([M.id], B.id)));
    await waitFor(() => counts.some((c) => c.matters[mid] === wantB), 10000, `UnreadCountUpdated at ${wantB} for Bob`);
    for (const u of [A, B, C, D]) {
      const want = Number(await db.query(unreadSQL([M.id], u.id)));
      for (const node of [n1, n3]) {
        await eventually(async () => {
          const got = await unreadCount(node, tokens.get(u));
          return got.unread_count === want && got.matters[mid] === want;
        }, 10000, `${u.name}'s unread count ${want} on node ${node.index}`);
      }
    }
  }));
});
