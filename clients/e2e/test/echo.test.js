// laravel-echo (on pusher-js) against a real `parley serve`: the Laravel
// Reverb / Pusher broadcaster paths an app actually uses.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { newId, scenario, subscribedVia, useServer, waitFor } from './helpers.js';

const T = { timeout: 20000 };

describe('laravel-echo', () => {
  const server = useServer({ before, after });

  it('private channel: listen() receives App\\Events\\MessageSent', T, scenario(server, async (ctx) => {
    const echo = await ctx.echo({ user: { id: '1' } });
    const got = [];
    const channel = echo.private('user.1').listen('MessageSent', (e) => got.push(e));
    await subscribedVia(channel, 'private-user.1');
    const payload = { message: { id: 9, body: 'Hello from Laravel', user_id: 1 } };
    await ctx.sdk().trigger('private-user.1', 'App\\Events\\MessageSent', payload);
    await waitFor(() => got.length === 1, 5000, 'MessageSent via Echo');
    assert.deepEqual(got[0], payload);
  }));

  it('presence channel: here / joining / leaving', T, scenario(server, async (ctx) => {
    const room = 'matter.4';
    const taylor = { id: '1', info: { id: 1, name: 'Taylor' } };
    const abigail = { id: '2', info: { id: 2, name: 'Abigail' } };

    const e1 = await ctx.echo({ name: 'taylor', user: taylor });
    let here1 = null;
    const joining = [];
    const leaving = [];
    e1.join(room)
      .here((users) => { here1 = users; })
      .joining((u) => joining.push(u))
      .leaving((u) => leaving.push(u));
    await waitFor(() => here1, 5000, 'here() for taylor');
    assert.deepEqual(here1, [taylor.info]);

    const e2 = await ctx.echo({ name: 'abigail', user: abigail, broadcaster: 'pusher' });
    let here2 = null;
    e2.join(room).here((users) => { here2 = users; });
    await waitFor(() => here2, 5000, 'here() for abigail');
    assert.deepEqual(
      [...here2].sort((a, b) => a.id - b.id),
      [taylor.info, abigail.info],
    );
    await waitFor(() => joining.length === 1, 5000, 'joining(abigail) at taylor');
    assert.deepEqual(joining[0], abigail.info);

    e2.leave(room);
    await waitFor(() => leaving.length === 1, 5000, 'leaving(abigail) at taylor');
    assert.deepEqual(leaving[0], abigail.info);
    await ctx.marker(e1, `presence-${room}`);
    assert.equal(joining.length + leaving.length, 2, 'presence callbacks');
  }));

  it('whisper / listenForWhisper between two Echo clients', T, scenario(server, async (ctx) => {
    const chat = `chat.${newId('')}`;
    const e1 = await ctx.echo({ name: 'typist', user: { id: '1' } });
    const e2 = await ctx.echo({ name: 'reader', user: { id: '2' } });
    const heardBy1 = [];
    const heardBy2 = [];
    const c1 = e1.private(chat).listenForWhisper('typing', (e) => heardBy1.push(e));
    const c2 = e2.private(chat).listenForWhisper('typing', (e) => heardBy2.push(e));
    await subscribedVia(c1, 'typist');
    await subscribedVia(c2, 'reader');
    c1.whisper('typing', { name: 'Taylor', typing: true });
    await waitFor(() => heardBy2.length === 1, 5000, 'whisper at the reader');
    assert.deepEqual(heardBy2[0], { name: 'Taylor', typing: true });
    // The reader's whisper reaches the channel after the typist's: the marker.
    await ctx.marker(e1, `private-${chat}`, { send: (m) => c2.whisper('test-marker', m) });
    assert.equal(heardBy1.length, 0, 'whispers echoed to the typist');
  }));

  it('whisper on a presence channel (join().whisper)', T, scenario(server, async (ctx) => {
    const room = `room.${newId('')}`;
    const e1 = await ctx.echo({ name: 'one', user: { id: '1', info: { id: 1 } } });
    const e2 = await ctx.echo({ name: 'two', user: { id: '2', info: { id: 2 } } });
    let h1 = null;
    let h2 = null;
    const heard = [];
    const p1 = e1.join(room).here((u) => { h1 = u; });
    e2.join(room).here((u) => { h2 = u; }).listenForWhisper('cursor', (e) => heard.push(e));
    await waitFor(() => h1 && h2, 5000, 'both joined');
    p1.whisper('cursor', { x: 10, y: 20 });
    await waitFor(() => heard.length === 1, 5000, 'presence whisper');
    assert.deepEqual(heard[0], { x: 10, y: 20 });
  }));
});
