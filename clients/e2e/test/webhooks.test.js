// Webhooks: Parley POSTs them to a real HTTP receiver here, and the `pusher`
// server SDK's webhook() checks each one's signature, as an app backend does.
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { PusherServer, newId, scenario, show, subscribed, useServer, waitFor } from './helpers.js';

const T = { timeout: 30000 };

// The receiver: every request is kept with its raw body and headers.
const requests = [];
const receiver = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    requests.push({ headers: req.headers, rawBody: Buffer.concat(chunks).toString('utf8') });
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{}');
  });
});
await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
receiver.unref();
const hookURL = `http://127.0.0.1:${receiver.address().port}/pusher/webhooks`;

const getServer = useServer({ before, after }, {
  env: {
    PARLEY_WEBHOOK_URL: hookURL,
    PARLEY_WEBHOOK_EVENTS: 'channel_occupied,channel_vacated,member_added,member_removed,client_event,cache_miss,subscription_count',
    PARLEY_WEBHOOK_VACATE_DELAY: '200ms',
  },
});
after(() => receiver.close());

/** Every event received so far, each request checked with the SDK first. */
function events(sdk) {
  const out = [];
  for (const r of requests) {
    const hook = sdk.webhook(r);
    assert.ok(hook.isValid(), `the pusher SDK rejects a webhook Parley sent: ${show(r)}`);
    assert.ok(Math.abs(Date.now() - hook.getTime().getTime()) < 60000, `time_ms ${hook.getData().time_ms} is off`);
    out.push(...hook.getEvents());
  }
  return out;
}

function waitEvent(sdk, match, label) {
  return waitFor(() => events(sdk).find(match), 10000, label);
}

describe('webhooks', () => {
  it('sends every event type, signed so that the pusher SDK validates it', T, scenario(getServer, async (ctx) => {
    const sdk = ctx.sdk();
    const room = `presence-${newId('room')}`;
    const priv = `private-${newId('chat')}`;
    const cache = `cache-${newId('c')}`;
    const pub = newId('pub');

    const alice = await ctx.pusher({ name: 'alice', user: { id: 7, info: { name: 'Alice' } } });
    const bob = await ctx.pusher({ name: 'bob', user: { id: 8, info: { name: 'Bob' } } });

    await subscribed(alice, room);
    await waitEvent(sdk, (e) => e.name === 'channel_occupied' && e.channel === room, 'channel_occupied');
    await waitEvent(sdk, (e) => e.name === 'member_added' && e.channel === room && e.user_id === '7', 'member_added');

    await subscribed(alice, pub);
    await waitEvent(sdk, (e) => e.name === 'subscription_count' && e.channel === pub && e.subscription_count === 1, 'subscription_count');

    const chat = await subscribed(alice, priv);
    await subscribed(bob, priv);
    const got = waitFor(chat, 5000, { event: 'client-typing' });
    bob.channel(priv).trigger('client-typing', { typing: true });
    await got;
    const ce = await waitEvent(sdk, (e) => e.name === 'client_event' && e.channel === priv, 'client_event');
    assert.equal(ce.event, 'client-typing');
    assert.deepEqual(JSON.parse(ce.data), { typing: true });
    assert.equal(ce.socket_id, bob.connection.socket_id);

    await subscribed(bob, cache);
    await waitEvent(sdk, (e) => e.name === 'cache_miss' && e.channel === cache, 'cache_miss');

    alice.unsubscribe(room);
    await waitEvent(sdk, (e) => e.name === 'member_removed' && e.channel === room && e.user_id === '7', 'member_removed');
    await waitEvent(sdk, (e) => e.name === 'channel_vacated' && e.channel === room, 'channel_vacated');

    // Each change once: one occupied and one member_added for the room.
    const all = events(sdk);
    assert.equal(all.filter((e) => e.name === 'channel_occupied' && e.channel === room).length, 1, show(all));
    assert.equal(all.filter((e) => e.name === 'member_added' && e.channel === room).length, 1, show(all));
    // Batched: occupied and member_added happen together and go in one request.
    assert.ok(requests.some((r) => JSON.parse(r.rawBody).events.length > 1), `no request with several events: ${show(requests)}`);

    // The wrong secret does not validate.
    const wrong = new PusherServer({ appId: ctx.server.appId, key: ctx.server.key, secret: 'not-the-secret' });
    assert.equal(wrong.webhook(requests[0]).isValid(), false);
  }));
});
