// The `pusher` Node server SDK (HTTP API) against a real `parley serve`,
// with pusher-js clients on the receiving end.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  MARKER_EVENT,
  collect,
  newId,
  scenario,
  show,
  subscribed,
  useServer,
  waitFor,
} from './helpers.js';

const T = { timeout: 20000 };

async function body(res) {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`response body is not JSON: ${JSON.stringify(text)}`);
  }
}

/** Awaits a promise that must reject with a pusher RequestError of `status`. */
async function rejectsWithStatus(promise, status, what) {
  let res;
  try {
    res = await promise;
  } catch (err) {
    assert.equal(err.name, 'PusherRequestError', `${what}: unexpected error ${err && err.stack}`);
    assert.equal(err.status, status,
      `${what}: expected HTTP ${status}, got ${err.status} (body ${JSON.stringify(err.body)}; cause ${err.error})`);
    return err;
  }
  assert.fail(`${what}: expected HTTP ${status}, but the request succeeded with ${res && res.status}`);
}

async function signedIn(pusher, ms = 5000) {
  const ok = waitFor(pusher.connection, ms, {
    event: 'message',
    filter: (m) => m.event === 'pusher:signin_success',
    label: 'pusher:signin_success',
  });
  pusher.signin();
  return ok;
}

describe('pusher server SDK (HTTP API)', () => {
  const server = useServer({ before, after });

  it('trigger to one channel', T, scenario(server, async (ctx) => {
    const name = newId('alerts-');
    const p = await ctx.pusher();
    const ch = await subscribed(p, name);
    const got = collect(ch, 'alert');
    const res = await ctx.sdk().trigger(name, 'alert', { level: 'high' });
    assert.equal(res.status, 200);
    const b = await body(res);
    assert.equal(typeof b, 'object');
    await waitFor(() => got.length === 1, 5000, 'alert');
    assert.deepEqual(got[0].data, { level: 'high' });
  }));

  it('trigger accepts string data verbatim', T, scenario(server, async (ctx) => {
    const name = newId('plain-');
    const p = await ctx.pusher();
    const ch = await subscribed(p, name);
    const got = collect(ch, 'note');
    await ctx.sdk().trigger(name, 'note', 'just a string');
    await waitFor(() => got.length === 1, 5000, 'note');
    assert.equal(got[0].data, 'just a string');
  }));

  it('trigger to an array of channels', T, scenario(server, async (ctx) => {
    const c1 = newId('multi-a-');
    const c2 = newId('multi-b-');
    const both = await ctx.pusher({ name: 'both' });
    const only2 = await ctx.pusher({ name: 'only2' });
    const b1 = await subscribed(both, c1);
    const b2 = await subscribed(both, c2);
    const o2 = await subscribed(only2, c2);
    const gotB1 = collect(b1, 'tick');
    const gotB2 = collect(b2, 'tick');
    const gotO2 = collect(o2, 'tick');
    const res = await ctx.sdk().trigger([c1, c2], 'tick', { n: 1 });
    assert.equal(res.status, 200);
    await waitFor(() => gotB1.length === 1 && gotB2.length === 1 && gotO2.length === 1, 5000,
      'tick on both channels');
    for (const g of [gotB1, gotB2, gotO2]) assert.deepEqual(g[0].data, { n: 1 });
    await ctx.marker(both, c1);
    await ctx.marker(both, c2);
    await ctx.marker(only2, c2);
    assert.deepEqual([gotB1.length, gotB2.length, gotO2.length], [1, 1, 1], 'tick events');

    // The `info` parameter returns per-channel attributes in the trigger response.
    const res2 = await ctx.sdk().trigger([c1, c2], 'tick', { n: 2 }, { info: 'subscription_count' });
    const info = await body(res2);
    assert.deepEqual(info.channels, { [c1]: { subscription_count: 1 }, [c2]: { subscription_count: 2 } },
      `trigger info=subscription_count: ${show(info)}`);
  }));

  it('trigger with socket_id excludes that socket', T, scenario(server, async (ctx) => {
    const name = newId('room-');
    const origin = await ctx.pusher({ name: 'origin' });
    const other = await ctx.pusher({ name: 'other' });
    const chO = await subscribed(origin, name);
    const chX = await subscribed(other, name);
    const gotO = collect(chO, 'said');
    const gotX = collect(chX, 'said');
    await ctx.sdk().trigger(name, 'said', { text: 'hi' }, { socket_id: origin.connection.socket_id });
    await waitFor(() => gotX.length === 1, 5000, 'said at the other socket');
    await ctx.marker(origin, name);
    assert.equal(gotO.length, 0, 'events delivered to the excluded socket');
  }));

  it('triggerBatch delivers every event of the batch (in order per channel)', T, scenario(server, async (ctx) => {
    const c1 = newId('batch-a-');
    const c2 = newId('batch-b-');
    const p = await ctx.pusher();
    const ch1 = await subscribed(p, c1);
    const ch2 = await subscribed(p, c2);
    const got = [];
    const counts = (ev) => !ev.startsWith('pusher') && ev !== MARKER_EVENT;
    ch1.bind_global((ev, data) => { if (counts(ev)) got.push([c1, ev, data]); });
    ch2.bind_global((ev, data) => { if (counts(ev)) got.push([c2, ev, data]); });
    const res = await ctx.sdk().triggerBatch([
      { channel: c1, name: 'first', data: { i: 1 } },
      { channel: c2, name: 'second', data: { i: 2 } },
      { channel: c1, name: 'third', data: 'three' },
    ]);
    assert.equal(res.status, 200);
    await waitFor(() => got.length === 3, 5000, 'three batched events');
    // Pusher orders events per channel; across channels there is no ordering promise.
    assert.deepEqual(got.filter((g) => g[0] === c1), [[c1, 'first', { i: 1 }], [c1, 'third', 'three']]);
    assert.deepEqual(got.filter((g) => g[0] === c2), [[c2, 'second', { i: 2 }]]);
    await ctx.marker(p, c1);
    await ctx.marker(p, c2);
    assert.equal(got.length, 3, 'batched events');
  }));

  it('channel queries: /channels, /channels/{name}, /channels/{name}/users', T, scenario(server, async (ctx) => {
    const px = newId('presence-x-');
    const py = newId('presence-y-');
    const pub = newId('public-z-');
    const u1 = { id: '1', info: { name: 'one' } };
    const u2 = { id: '2', info: { name: 'two' } };
    const u3 = { id: '3', info: { name: 'three' } };

    const a1 = await ctx.pusher({ name: 'u1#a', user: u1 });
    const a2 = await ctx.pusher({ name: 'u1#b', user: u1 });
    const b = await ctx.pusher({ name: 'u2', user: u2 });
    const c = await ctx.pusher({ name: 'u3', user: u3 });
    await subscribed(a1, px);
    await subscribed(a2, px);
    await subscribed(b, px);
    await subscribed(c, py);
    await subscribed(c, pub);

    const sdk = ctx.sdk();

    // GET /apps/app-1/channels?filter_by_prefix=presence-&info=user_count
    let res = await sdk.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } });
    assert.equal(res.status, 200);
    let b1 = await body(res);
    assert.ok(b1.channels && typeof b1.channels === 'object', `expected {channels:{...}}: ${show(b1)}`);
    for (const n of Object.keys(b1.channels)) assert.ok(n.startsWith('presence-'), `filter_by_prefix leaked ${n}`);
    assert.deepEqual(b1.channels[px], { user_count: 2 });
    assert.deepEqual(b1.channels[py], { user_count: 1 });

    // Without a filter the public channel is listed too.
    res = await sdk.get({ path: '/channels' });
    b1 = await body(res);
    for (const n of [px, py, pub]) assert.ok(n in b1.channels, `${n} missing from /channels: ${show(b1)}`);

    // GET /apps/app-1/channels/presence-x?info=user_count,subscription_count
    res = await sdk.get({ path: `/channels/${px}`, params: { info: 'user_count,subscription_count' } });
    assert.equal(res.status, 200);
    const b2 = await body(res);
    assert.equal(b2.occupied, true, show(b2));
    assert.equal(b2.user_count, 2, `two distinct users: ${show(b2)}`);
    assert.equal(b2.subscription_count, 3, `three sockets: ${show(b2)}`);

    // GET /apps/app-1/channels/presence-x/users
    res = await sdk.get({ path: `/channels/${px}/users` });
    assert.equal(res.status, 200);
    const b3 = await body(res);
    assert.ok(Array.isArray(b3.users), show(b3));
    assert.deepEqual(b3.users.map((u) => u.id).sort(), ['1', '2']);

    // A public channel with subscription_count; an unused channel is unoccupied.
    res = await sdk.get({ path: `/channels/${pub}`, params: { info: 'subscription_count' } });
    const b4 = await body(res);
    assert.equal(b4.occupied, true, show(b4));
    assert.equal(b4.subscription_count, 1, show(b4));
    // user_count is only defined for presence channels (Pusher answers 400).
    await rejectsWithStatus(sdk.get({ path: `/channels/${pub}`, params: { info: 'user_count' } }), 400,
      'info=user_count on a public channel');
    res = await sdk.get({ path: `/channels/${newId('nobody-')}` });
    assert.equal(res.status, 200);
    const b5 = await body(res);
    assert.equal(b5.occupied, false, show(b5));

    // Counts follow unsubscriptions. Once a1 has a marker, the channel has
    // handled the unsubscribe (queued there before the pong) and its counts.
    a2.unsubscribe(px);
    await ctx.roundTrip(a2);
    await ctx.marker(a1, px);
    res = await sdk.get({ path: `/channels/${px}`, params: { info: 'user_count,subscription_count' } });
    const b6 = await body(res);
    assert.equal(b6.subscription_count, 2, show(b6));
    assert.equal(b6.user_count, 2, `user 1 still has a socket: ${show(b6)}`);
  }));

  it('terminateUserConnections disconnects every socket of that user only', T, scenario(server, async (ctx) => {
    const victim = { id: 'term-1', info: {} };
    const bystander = { id: 'keep-2', info: {} };
    const v1 = await ctx.pusher({ name: 'victim#1', user: victim });
    const v2 = await ctx.pusher({ name: 'victim#2', user: victim });
    const k = await ctx.pusher({ name: 'bystander', user: bystander });
    await signedIn(v1);
    await signedIn(v2);
    await signedIn(k);

    const left = (p) => {
      const states = [];
      p.connection.bind('state_change', (s) => states.push(s));
      return () => states.some((s) => s.previous === 'connected');
    };
    const v1Left = left(v1);
    const v2Left = left(v2);
    const kLeft = left(k);

    const res = await ctx.sdk().terminateUserConnections('term-1');
    assert.equal(res.status, 200);
    await waitFor(() => v1Left() && v2Left(), 5000, 'both sockets of term-1 to be disconnected');
    // A new socket of term-1 joins the user's channel after the terminate:
    // once it has a marker there, the channel has finished terminating; a
    // marker to the bystander comes after that, and must find it connected.
    const toUser = (id) => ({ send: (m) => ctx.sdk().sendToUser(id, MARKER_EVENT, m) });
    const v3 = await ctx.pusher({ name: 'victim#3', user: victim });
    await signedIn(v3);
    await ctx.roundTrip(v3); // the server has put the socket in term-1's channel
    await ctx.marker(v3, null, toUser('term-1'));
    await ctx.marker(k, null, toUser('keep-2'));
    assert.equal(kLeft(), false, 'disconnects of another user');
    assert.equal(k.connection.state, 'connected');
  }));

  it('a request signed with the wrong secret is rejected with 401', T, scenario(server, async (ctx) => {
    const name = newId('guarded-');
    const p = await ctx.pusher();
    const ch = await subscribed(p, name);
    const got = collect(ch, 'x');
    const bad = ctx.sdk({ secret: 'wrong-secret' });
    await rejectsWithStatus(bad.trigger(name, 'x', { no: 1 }), 401, 'trigger with a wrong secret');
    await rejectsWithStatus(bad.get({ path: '/channels' }), 401, 'GET /channels with a wrong secret');
    await ctx.marker(p, name);
    assert.equal(got.length, 0, 'events from a wrongly signed trigger');
  }));

  it('an unknown app id is 404', T, scenario(server, async (ctx) => {
    const ghost = ctx.sdk({ appId: 'no-such-app' });
    await rejectsWithStatus(ghost.trigger(newId('c-'), 'x', {}), 404, 'trigger on an unknown app id');
    await rejectsWithStatus(ghost.get({ path: '/channels' }), 404, 'GET /channels on an unknown app id');
  }));

  it('event data over 10 KB is rejected with 413', T, scenario(server, async (ctx) => {
    const name = newId('big-');
    const p = await ctx.pusher();
    const ch = await subscribed(p, name);
    const got = collect(ch, 'blob');
    const big = 'x'.repeat(10 * 1024 + 1);
    await rejectsWithStatus(ctx.sdk().trigger(name, 'blob', big), 413, 'trigger with > 10 KB of data');
    await ctx.marker(p, name);
    assert.equal(got.length, 0, 'oversized events delivered');
    // Just under the limit is fine.
    const ok = 'y'.repeat(9 * 1024);
    const res = await ctx.sdk().trigger(name, 'blob', ok);
    assert.equal(res.status, 200);
    await waitFor(() => got.length === 1, 5000, '9 KB event');
    assert.equal(got[0].data, ok);
  }));
});
