// pusher-js (the real browser/Node client) against a real `parley serve`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  MARKER_EVENT,
  collect,
  newId,
  pusherErrorCode,
  scenario,
  show,
  subscribed,
  useServer,
  waitFor,
  within,
} from './helpers.js';

const T = { timeout: 20000 };

describe('pusher-js', () => {
  const server = useServer({ before, after });

  it('connects and gets a Pusher-style socket id', T, scenario(server, async (ctx) => {
    const p = await ctx.pusher();
    assert.equal(p.connection.state, 'connected');
    assert.match(p.connection.socket_id, /^\d+\.\d+$/, 'socket_id must look like "1234.5678"');
  }));

  it('answers pusher:ping with pusher:pong (raw frames)', T, scenario(server, async (ctx) => {
    const raw = await ctx.rawSocket();
    await waitFor(() => raw.messages.find((m) => m.event === 'pusher:connection_established'), 5000,
      'pusher:connection_established');
    const est = raw.messages.find((m) => m.event === 'pusher:connection_established');
    const estData = typeof est.data === 'string' ? JSON.parse(est.data) : est.data;
    assert.match(String(estData.socket_id), /^\d+\.\d+$/);
    assert.ok(Number(estData.activity_timeout) > 0, `activity_timeout must be > 0: ${show(estData)}`);
    raw.send({ event: 'pusher:ping', data: {} });
    await waitFor(() => raw.messages.find((m) => m.event === 'pusher:pong'), 5000, 'pusher:pong');
  }));

  it('unknown app key: pusher:error 4001 surfaced, connection refused, no reconnect', T, scenario(server, async (ctx) => {
    const errors = [];
    const p = await ctx.pusher({ key: 'no-such-key', connect: false });
    p.connection.bind('error', (e) => errors.push(e));
    const states = [];
    p.connection.bind('state_change', (s) => states.push(s.current));
    await waitFor(() => errors.some((e) => pusherErrorCode(e) === 4001), 8000,
      'a connection error carrying code 4001');
    // pusher-js treats 4000-4099 as "refused": it must stop, not retry.
    await waitFor(() => ['disconnected', 'failed', 'unavailable'].includes(p.connection.state), 5000,
      'state disconnected/failed/unavailable');
    // Checked without waiting: pusher-js reconnects only from a retry timer,
    // a running connection attempt or a live connection, and holds none.
    const cm = p.connection;
    assert.ok(!cm.retryTimer && !cm.runner && !cm.connection,
      `pusher-js must not reconnect after 4001; states: ${states.join(',')}`);
    assert.ok(!states.includes('connected'), `must never be connected; states: ${states.join(',')}`);

    // The same exchange on the wire: pusher:error {code:4001} then a close with code 4001.
    const raw = await ctx.rawSocket('no-such-key');
    const close = await within(raw.closed, 5000);
    assert.ok(close, 'server must close the socket of an unknown app key');
    const errMsg = raw.messages.find((m) => m.event === 'pusher:error');
    assert.ok(errMsg, `expected a pusher:error frame before the close; frames: ${show(raw.frames)}`);
    const errData = typeof errMsg.data === 'string' ? JSON.parse(errMsg.data) : errMsg.data;
    assert.equal(errData.code, 4001);
    assert.equal(close.code, 4001, 'close frame code should repeat the pusher:error code');
  }));

  it('public channel: receives an event triggered by the server SDK', T, scenario(server, async (ctx) => {
    const p = await ctx.pusher();
    const name = newId('news-');
    const ch = await subscribed(p, name);
    const got = collect(ch, 'headline');
    await ctx.sdk().trigger(name, 'headline', { title: 'hello', n: 1 });
    await waitFor(() => got.length === 1, 5000, 'headline event');
    assert.deepEqual(got[0].data, { title: 'hello', n: 1 });
    await ctx.marker(p, name);
    assert.equal(got.length, 1, 'one trigger, one headline');

    // After pusher:unsubscribe nothing more arrives on that channel.
    const wire = () => ctx.received(p).filter((f) => f.channel === name && f.event === 'headline').length;
    p.unsubscribe(name);
    await ctx.roundTrip(p); // the unsubscribe is handled before the trigger
    await ctx.sdk().trigger(name, 'headline', { title: 'late' });
    // Subscribing again is the marker: the channel handles the subscribe
    // after the publish, so a "late" headline still due to p would come first.
    await subscribed(p, name);
    assert.equal(wire(), 1, 'headline frames after unsubscribe');
  }));

  it('private channel: authorized subscription receives server events', T, scenario(server, async (ctx) => {
    const p = await ctx.pusher();
    const name = newId('private-orders-');
    const ch = await subscribed(p, name);
    assert.equal(ch.subscribed, true);
    const got = collect(ch, 'order.shipped');
    await ctx.sdk().trigger(name, 'order.shipped', { id: 42 });
    await waitFor(() => got.length === 1, 5000, 'order.shipped');
    assert.deepEqual(got[0].data, { id: 42 });
  }));

  it('private channel: a wrong signature makes the subscription fail', T, scenario(server, async (ctx) => {
    const forger = ctx.sdk({ secret: 'not-the-secret' });
    const p = await ctx.pusher({ authSdk: forger });
    const name = newId('private-vault-');
    const ch = p.subscribe(name);
    const succeeded = collect(ch, 'pusher:subscription_succeeded');
    const failed = collect(ch, 'pusher:subscription_error');
    await waitFor(() => failed.length > 0 || succeeded.length > 0, 5000, 'pusher:subscription_error');
    assert.equal(succeeded.length, 0, 'must not be subscribed with a forged signature');
    assert.ok(failed.length >= 1);
    assert.equal(ch.subscribed, false);

    // And it must really not receive anything on that channel. p is in no
    // channel there: once a rightful subscriber has a marker, the channel has
    // handed out the event to everyone; a marker on a channel of p's own
    // comes after that.
    const rightful = await ctx.pusher({ name: 'rightful' });
    await subscribed(rightful, name);
    const own = newId('own-');
    await subscribed(p, own);
    const got = collect(ch, 'secret');
    await ctx.sdk().trigger(name, 'secret', { leak: true });
    await ctx.marker(rightful, name);
    await ctx.marker(p, own);
    assert.equal(got.length, 0, 'events on a channel whose auth failed');
    assert.deepEqual(ctx.received(p).filter((f) => f.channel === name && f.event === 'secret'), []);
  }));

  it('presence: members list, member_added once per user, member_removed on last socket', T, scenario(server, async (ctx) => {
    const room = newId('presence-room-');
    const alice = { id: '1', info: { name: 'Alice' } };
    const bob = { id: '2', info: { name: 'Bob' } };

    const a = await ctx.pusher({ name: 'alice', user: alice });
    const chA = await subscribed(a, room);
    assert.equal(chA.members.count, 1);
    assert.equal(chA.members.me.id, '1');
    assert.deepEqual(chA.members.me.info, alice.info);
    const added = collect(chA, 'pusher:member_added');
    const removed = collect(chA, 'pusher:member_removed');

    const b1 = await ctx.pusher({ name: 'bob#1', user: bob });
    const chB1 = await subscribed(b1, room);
    assert.equal(chB1.members.count, 2);
    const seen = {};
    chB1.members.each((m) => { seen[m.id] = m.info; });
    assert.deepEqual(seen, { 1: alice.info, 2: bob.info });
    await waitFor(() => added.length === 1, 5000, 'member_added for bob');
    assert.equal(added[0].data.id, '2');
    assert.deepEqual(added[0].data.info, bob.info);

    // Bob's second socket: same user, so no second member_added.
    const b2 = await ctx.pusher({ name: 'bob#2', user: bob });
    const chB2 = await subscribed(b2, room);
    assert.equal(chB2.members.count, 2, 'the second socket of bob sees 2 users');
    await ctx.marker(a, room);
    assert.equal(added.length, 1, 'member_added events (bob already present)');
    assert.equal(chA.members.count, 2);

    // Bob's second socket leaves (unsubscribe): bob still present through socket 1.
    b2.unsubscribe(room);
    await ctx.roundTrip(b2); // the channel has the unsubscribe before the marker
    await ctx.marker(a, room);
    assert.equal(removed.length, 0, 'member_removed events (bob still has a socket)');

    // Bob's last socket goes away (disconnect): now member_removed.
    b1.disconnect();
    await waitFor(() => removed.length === 1, 5000, 'member_removed for bob');
    assert.equal(removed[0].data.id, '2');
    assert.equal(chA.members.count, 1);
    await ctx.marker(a, room);
    assert.equal(removed.length, 1, 'member_removed events');
  }));

  it('presence: channel_data not covered by the signature is refused', T, scenario(server, async (ctx) => {
    const room = newId('presence-vip-');
    const sdk = ctx.sdk();
    // A backend signed user "1"; the client swaps in user "999" (the signature no longer matches).
    const p = await ctx.pusher({
      extra: {
        channelAuthorization: {
          customHandler: ({ socketId, channelName }, cb) => {
            const signed = sdk.authorizeChannel(socketId, channelName, { user_id: '1', user_info: { name: 'One' } });
            cb(null, { auth: signed.auth, channel_data: JSON.stringify({ user_id: '999', user_info: { name: 'Mallory' } }) });
          },
        },
      },
    });
    const ch = p.subscribe(room);
    const ok = collect(ch, 'pusher:subscription_succeeded');
    const bad = collect(ch, 'pusher:subscription_error');
    await waitFor(() => ok.length + bad.length > 0, 5000, 'the outcome of the tampered subscription');
    assert.equal(ok.length, 0, 'tampered channel_data must not be accepted');
    const res = await sdk.get({ path: `/channels/${room}/users` }).then((r) => r.json());
    assert.deepEqual(res.users || [], [], `no member may have been added: ${show(res)}`);
  }));

  it('client events on a private channel reach the others, never the sender', T, scenario(server, async (ctx) => {
    const name = newId('private-chat-');
    const a = await ctx.pusher({ name: 'sender' });
    const b = await ctx.pusher({ name: 'receiver' });
    const chA = await subscribed(a, name);
    const chB = await subscribed(b, name);
    const gotA = collect(chA, 'client-typing');
    const gotB = collect(chB, 'client-typing');
    assert.equal(chA.trigger('client-typing', { who: 'a' }), true);
    await waitFor(() => gotB.length === 1, 5000, 'client-typing at the receiver');
    assert.deepEqual(gotB[0].data, { who: 'a' });
    // b's client event reaches the channel after a's: the marker for a.
    await ctx.marker(a, name, { send: (m) => chB.trigger(`client-${MARKER_EVENT}`, m) });
    assert.equal(gotA.length, 0, 'echoes of a client event to its sender');
  }));

  it('client events on a presence channel carry the sender user_id', T, scenario(server, async (ctx) => {
    const name = newId('presence-chat-');
    const a = await ctx.pusher({ name: 'u7', user: { id: '7', info: { n: 7 } } });
    const b = await ctx.pusher({ name: 'u8', user: { id: '8', info: { n: 8 } } });
    const chA = await subscribed(a, name);
    const chB = await subscribed(b, name);
    const gotA = collect(chA, 'client-wave');
    const gotB = collect(chB, 'client-wave');
    chA.trigger('client-wave', { hi: true });
    await waitFor(() => gotB.length === 1, 5000, 'client-wave at u8');
    assert.deepEqual(gotB[0].data, { hi: true });
    assert.equal(gotB[0].meta && gotB[0].meta.user_id, '7', 'presence client events carry user_id of the sender');
    await ctx.marker(a, name, { send: (m) => chB.trigger(`client-${MARKER_EVENT}`, m) });
    assert.equal(gotA.length, 0, 'echoes to the sender');
  }));

  it('client events to a channel the sender has not joined are not relayed', T, scenario(server, async (ctx) => {
    const name = newId('private-members-');
    const member = await ctx.pusher({ name: 'member' });
    const outsider = await ctx.pusher({ name: 'outsider' });
    const ch = await subscribed(member, name);
    const got = collect(ch, 'client-inject');
    // pusher-js only exposes trigger() on channels; send the raw event the way it would.
    outsider.send_event('client-inject', { evil: true }, name);
    await ctx.roundTrip(outsider); // the event is refused, or queued at the channel before the marker
    await ctx.marker(member, name);
    assert.equal(got.length, 0, 'client events from a non-subscriber');
  }));

  it('client events on a public channel are refused with pusher:error', T, scenario(server, async (ctx) => {
    const name = newId('lobby-');
    const a = await ctx.pusher({ name: 'sender' });
    const b = await ctx.pusher({ name: 'bystander' });
    const chA = await subscribed(a, name);
    const chB = await subscribed(b, name);
    const errors = [];
    a.connection.bind('error', (e) => errors.push(e));
    const gotB = collect(chB, 'client-shout');
    chA.trigger('client-shout', { loud: true });
    await waitFor(() => errors.some((e) => e && e.type === 'PusherError'), 5000, 'pusher:error at the sender');
    await ctx.marker(b, name); // the refusal was the server's answer: nothing went to the channel before it
    assert.equal(gotB.length, 0, 'client events relayed on a public channel');
    assert.equal(a.connection.state, 'connected', 'a refused client event is not fatal to the connection');
  }));

  it('private-encrypted: SDK encrypts, pusher-js decrypts, server only relays', T, scenario(server, async (ctx) => {
    const name = newId('private-encrypted-ledger-');
    const p = await ctx.pusher();
    const ch = await subscribed(p, name);
    const got = collect(ch, 'balance');
    await ctx.sdk().trigger(name, 'balance', { amount: 1234, currency: 'EUR' });
    await waitFor(() => got.length === 1, 5000, 'decrypted balance event');
    assert.deepEqual(got[0].data, { amount: 1234, currency: 'EUR' });
    const wire = ctx.clients[0].frames.find((f) => f.dir === 'in' && f.event === 'balance');
    assert.ok(wire && wire.data && typeof wire.data.ciphertext === 'string' && typeof wire.data.nonce === 'string',
      `the frame on the wire must be ciphertext: ${show(wire)}`);
  }));

  it('user authentication: signin, then events sent with sendToUser', T, scenario(server, async (ctx) => {
    const p = await ctx.pusher({ user: { id: 'u-42', info: { name: 'Ann' } } });
    const signinOk = waitFor(p.connection, 5000, {
      event: 'message',
      filter: (m) => m.event === 'pusher:signin_success',
      label: 'pusher:signin_success',
    });
    const signinErr = [];
    p.user.bind('pusher:signin_error', (e) => signinErr.push(e));
    p.signin();
    const success = await signinOk;
    const userData = JSON.parse(success.data.user_data);
    assert.equal(userData.id, 'u-42');
    assert.equal(signinErr.length, 0);
    // pusher-js then subscribes to #server-to-user-u-42 on its own.
    await waitFor(() => p.user.serverToUserChannel && p.user.serverToUserChannel.subscribed, 5000,
      'subscription to #server-to-user-u-42');
    const got = [];
    p.user.bind('invoice.paid', (data) => got.push(data));
    await ctx.sdk().sendToUser('u-42', 'invoice.paid', { invoice: 7 });
    await waitFor(() => got.length === 1, 5000, 'invoice.paid via pusher.user');
    assert.deepEqual(got[0], { invoice: 7 });
    // Another user's event must not arrive. u-43 has a socket too: once it
    // has a marker, u-43's channel has handed out the event to everyone.
    const toUser = (id) => ({ send: (m) => ctx.sdk().sendToUser(id, MARKER_EVENT, m) });
    const u43 = await ctx.pusher({ name: 'u-43', user: { id: 'u-43' } });
    const ok43 = waitFor(u43.connection, 5000, {
      event: 'message', filter: (m) => m.event === 'pusher:signin_success', label: 'signin_success u-43',
    });
    u43.signin();
    await ok43;
    await ctx.roundTrip(u43); // the server has put the socket in u-43's channel
    await ctx.sdk().sendToUser('u-43', 'invoice.paid', { invoice: 8 });
    await ctx.marker(u43, null, toUser('u-43'));
    await ctx.marker(p, null, toUser('u-42'));
    assert.equal(got.length, 1, 'events for another user');
    assert.equal(ctx.received(p).filter((f) => f.event === 'invoice.paid').length, 1, 'invoice.paid frames at u-42');

    // A second socket of the same user gets sendToUser events too.
    const p2 = await ctx.pusher({ name: 'u-42#2', user: { id: 'u-42' } });
    const ok2 = waitFor(p2.connection, 5000, {
      event: 'message', filter: (m) => m.event === 'pusher:signin_success', label: 'signin_success #2',
    });
    p2.signin();
    await ok2;
    await waitFor(() => p2.user.serverToUserChannel && p2.user.serverToUserChannel.subscribed, 5000,
      'second socket subscribed to #server-to-user-u-42');
    const got2 = [];
    p2.user.bind('invoice.paid', (data) => got2.push(data));
    await ctx.sdk().sendToUser('u-42', 'invoice.paid', { invoice: 9 });
    await waitFor(() => got.length === 2 && got2.length === 1, 5000, 'invoice 9 on both sockets of u-42');
    assert.deepEqual(got[1], { invoice: 9 });
    assert.deepEqual(got2[0], { invoice: 9 });
  }));

  it('user authentication: a forged signin gets no user events', T, scenario(server, async (ctx) => {
    const forger = ctx.sdk({ secret: 'not-the-secret' });
    const p = await ctx.pusher({ user: { id: 'u-77' }, authSdk: forger });
    // Also try to listen to the user's channel without signing in at all
    // (pusher-js's subscribe() refuses '#' names, so send the frame it would send).
    const snoop = await ctx.pusher({ name: 'snoop' });
    snoop.send_event('pusher:subscribe', { auth: '', channel: '#server-to-user-u-77' });
    const snoopFrames = (ev) => ctx.clients[1].frames
      .filter((f) => f.dir === 'in' && f.channel === '#server-to-user-u-77' && f.event === ev).length;

    p.signin();
    // The server answers a bad signature with pusher:error 4009 and a close;
    // a success would have come before it.
    const refusal = await waitFor(() => ctx.received(p).find((f) => f.event === 'pusher:error'), 5000,
      'pusher:error for the forged signin');
    assert.equal(refusal.data && refusal.data.code, 4009, show(refusal));
    const success = ctx.received(p).filter((f) => f.event === 'pusher:signin_success');
    assert.equal(success.length, 0, 'a forged signin must not succeed');
    // The snoop's subscribe was refused (so nothing was passed on to u-77's channel).
    await waitFor(() => snoopFrames('pusher:subscription_error'), 5000, 'subscription_error at the snoop');

    // The rightful u-77 signs in, so that once it has a marker, u-77's
    // channel has handed out the payroll to everyone; a marker on the snoop's
    // own channel comes after that.
    const owner = await ctx.pusher({ name: 'owner', user: { id: 'u-77' } });
    const ownerOk = waitFor(owner.connection, 5000, {
      event: 'message', filter: (m) => m.event === 'pusher:signin_success', label: 'signin_success of u-77',
    });
    owner.signin();
    await ownerOk;
    await ctx.roundTrip(owner); // the server has put the socket in u-77's channel
    const own = newId('snoop-own-');
    await subscribed(snoop, own);
    await ctx.sdk().sendToUser('u-77', 'payroll', { amount: 1 });
    await ctx.marker(owner, null, { send: (m) => ctx.sdk().sendToUser('u-77', MARKER_EVENT, m) });
    await ctx.marker(snoop, own);
    const leaked = ctx.received(p).filter((f) => f.event === 'payroll').length + snoopFrames('payroll');
    assert.equal(leaked, 0, 'user events leaked to a forged signin or a snooping socket');
    assert.equal(snoopFrames('pusher_internal:subscription_succeeded'), 0,
      '#server-to-user-* needs a signed-in socket of that user');
  }));

  it('cache channel: cache_miss when empty, then the last event is replayed', T, scenario(server, async (ctx) => {
    const name = newId('cache-price-');
    const a = await ctx.pusher({ name: 'first' });
    const chA = a.subscribe(name);
    const missA = collect(chA, 'pusher:cache_miss');
    const okA = collect(chA, 'pusher:subscription_succeeded');
    await waitFor(() => missA.length === 1, 5000, 'pusher:cache_miss on an empty cache channel');
    assert.equal(okA.length, 1, 'subscription_succeeded comes with the cache_miss');

    const sdk = ctx.sdk();
    const gotA = collect(chA, 'price');
    await sdk.trigger(name, 'price', { v: 1 });
    await sdk.trigger(name, 'price', { v: 2 });
    await waitFor(() => gotA.length === 2, 5000, 'both live price events at the first subscriber');
    assert.deepEqual(gotA.map((g) => g.data), [{ v: 1 }, { v: 2 }]);

    const b = await ctx.pusher({ name: 'late' });
    const chB = b.subscribe(name);
    const priceB = collect(chB, 'price');
    const missB = collect(chB, 'pusher:cache_miss');
    await waitFor(() => priceB.length >= 1, 5000, 'replayed last price on subscribe');
    assert.deepEqual(priceB[0].data, { v: 2 }, 'only the last event is replayed');
    await ctx.marker(b, name);
    assert.equal(priceB.length, 1, 'replayed events');
    assert.equal(missB.length, 0, 'no cache_miss when there is a cached event');
    assert.equal(chB.subscribed, true);

    // The cache does not depend on anybody being subscribed when the event is published.
    const lonely = newId('cache-lonely-');
    await sdk.trigger(lonely, 'state', { s: 'ready' });
    const chL = b.subscribe(lonely);
    const stateL = collect(chL, 'state');
    const missL = collect(chL, 'pusher:cache_miss');
    await waitFor(() => stateL.length >= 1 || missL.length >= 1, 5000, 'replay on a cache channel triggered while empty');
    assert.equal(missL.length, 0, 'an event published with no subscriber is still cached');
    assert.deepEqual(stateL[0].data, { s: 'ready' });
  }));
});
