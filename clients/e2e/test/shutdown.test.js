// Orderly stop: SIGTERM -> every socket gets close code 4200 ("reconnect
// immediately"), and the process exits 0 within 10 s. pusher-js then
// reconnects on its own once a server is back.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  collect,
  newId,
  pusherErrorCode,
  scenario,
  show,
  startParley,
  subscribed,
  useServer,
  waitFor,
  within,
} from './helpers.js';

describe('shutdown', () => {
  const server = useServer({ before, after });
  let replacement = null;
  after(async () => {
    if (replacement) await replacement.stop();
  });

  it('SIGTERM closes every socket with 4200 and exits 0 within 10 s; pusher-js reconnects', { timeout: 45000 }, scenario(server, async (ctx) => {
    const srv = server();

    // A raw socket, fully established.
    const raw = await ctx.rawSocket();
    await waitFor(() => raw.messages.find((m) => m.event === 'pusher:connection_established'), 5000,
      'pusher:connection_established on the raw socket');

    // A pusher-js client, subscribed somewhere.
    const p = await ctx.pusher({ name: 'pusher-js' });
    const name = newId('ops-');
    const ch = await subscribed(p, name);
    const firstSocket = p.connection.socket_id;
    const errors = [];
    const states = [];
    p.connection.bind('error', (e) => errors.push(e));
    p.connection.bind('state_change', (s) => states.push(s.current));

    const t0 = Date.now();
    const stopped = srv.stop(10000);

    const close = await within(raw.closed, 10000);
    assert.ok(close, 'the raw socket must be closed by the server on SIGTERM');
    assert.equal(close.code, 4200, `close code on shutdown (got ${show(close)})`);

    // pusher-js sees the 4200 close and goes back to connecting (it would reconnect).
    await waitFor(() => states.includes('connecting') || states.includes('unavailable'), 5000,
      'pusher-js to leave "connected" for "connecting"');
    assert.ok(errors.some((e) => pusherErrorCode(e) === 4200),
      `pusher-js should surface close code 4200; errors: ${show(errors)}`);

    const res = await stopped;
    const took = Date.now() - t0;
    assert.equal(res.killed, false, `parley had to be SIGKILLed after ${took} ms`);
    assert.equal(res.signal, null, `parley died of signal ${res.signal}`);
    assert.equal(res.code, 0, `exit code after SIGTERM (output:\n${srv.log().slice(-4000)})`);
    assert.ok(took < 10000, `took ${took} ms to exit`);

    // A new server on the same address: pusher-js reconnects and resubscribes by itself.
    replacement = await startParley({ port: srv.port });
    // (pusher-js's own retry schedule: its attempt made while the old server was
    // exiting times out after 15 s, then it connects at once.)
    await waitFor(() => p.connection.state === 'connected', 25000, 'pusher-js to reconnect to the new server');
    assert.notEqual(p.connection.socket_id, firstSocket, 'a new connection has a new socket id');
    await waitFor(() => ch.subscribed, 5000, `resubscription to ${name}`);
    const got = collect(ch, 'back');
    const sdk = ctx.sdk();
    await sdk.trigger(name, 'back', { ok: true });
    await waitFor(() => got.length === 1, 5000, 'an event after the reconnect');
    assert.deepEqual(got[0].data, { ok: true });
  }));
});
