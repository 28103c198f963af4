// The chat backend end to end, with the clients a Laravel app's front end
// uses: users, a matter and memberships made with `parley users|matters ...`,
// REST calls with Node's fetch and bearer tokens from POST /api/auth/login,
// and laravel-echo (on pusher-js) authorized by Parley's own
// POST /api/broadcasting/auth.
//
// Channel authorization is NOT a customHandler here: Echo gets
// `authEndpoint` + `auth.headers.Authorization`, so pusher-js's Node build
// does its real form-encoded POST (through the XMLHttpRequest emulation it
// bundles), exactly the request a browser makes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  chatEcho,
  scenario,
  subscribedVia,
  show,
  useServer,
  waitFor,
  runAdmin as admin,
  chatApi as api,
} from './helpers.js';

const T = { timeout: 30000 };
const PASSWORD = 'correct horse battery';


// A REST message object as events carry it: one object for every receiver,
// so no one's read state (docs/chat-api.md, "Events").
const asEvent = (m) => ({ ...m, is_read: m.deleted_at != null, read_at: null, read_by: [] });

function expectStatus(res, status, what) {
  assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status} ${show(res.body)}`);
  return res.body;
}

async function login(srv, user) {
  const res = await api(srv, 'POST', '/api/auth/login', { body: { email: user.email, password: PASSWORD } });
  const body = expectStatus(res, 200, `login as ${user.email}`);
  assert.equal(typeof body.token, 'string');
  assert.equal(body.user.id, user.id);
  return body.token;
}

async function send(srv, token, matterId, message, headers = {}) {
  const res = await api(srv, 'POST', '/api/messages/send', {
    token, body: { message, client_matter_id: matterId }, headers,
  });
  return expectStatus(res, 201, `send "${message}"`).data;
}

async function unreadCount(srv, token) {
  return expectStatus(await api(srv, 'GET', '/api/messages/unread-count', { token }), 200, 'unread-count');
}

/** Resolves with the subscription_error an Echo channel gets (or rejects on success/timeout). */
function refusedVia(echoChannel, label, ms = 5000) {
  let ok = false;
  let err = null;
  echoChannel.subscribed(() => { ok = true; });
  echoChannel.error((e) => { err = e; });
  return waitFor(() => {
    if (ok) throw new Error(`${label}: subscription succeeded but must be refused`);
    return err;
  }, ms, `${label} subscription_error`);
}

describe('chat: REST API + laravel-echo with /api/broadcasting/auth', () => {
  const server = useServer({ before, after });
  const fx = {}; // {A, B, C, M}
  let setupError = null;

  before(async () => {
    try {
      const srv = server();
      const dir = srv.dataDir;
      const mk = (name) => admin(dir, ['users', 'create', '--name', name, '--email', `${name.toLowerCase()}@chat.test`, '--password', PASSWORD]);
      fx.A = await mk('Alice');
      fx.B = await mk('Bob');
      fx.C = await mk('Carol');
      fx.M = await admin(dir, ['matters', 'create', '--title', 'Smith v. Jones']);
      await admin(dir, ['matters', 'add-member', '--matter', String(fx.M.id), '--user', String(fx.A.id)]);
      await admin(dir, ['matters', 'add-member', '--matter', String(fx.M.id), '--user', String(fx.B.id)]);
    } catch (err) {
      setupError = err;
    }
  });
  const fixtures = () => {
    if (setupError) throw setupError;
    return fx;
  };

  it('MessageSent reaches the recipient on private-user.{id} and private-matter.{id}, equal to the REST answer', T, scenario(server, async (ctx) => {
    const { A, B, M } = fixtures();
    const srv = ctx.server;
    const tokenA = await login(srv, A);
    const tokenB = await login(srv, B);

    const echoB = await chatEcho(ctx, tokenB, 'bob');
    const onUser = [];
    const onMatter = [];
    const userCh = echoB.private(`user.${B.id}`).listen('MessageSent', (e) => onUser.push(e));
    const matterCh = echoB.private(`matter.${M.id}`).listen('MessageSent', (e) => onMatter.push(e));
    await subscribedVia(userCh, `private-user.${B.id}`);
    await subscribedVia(matterCh, `private-matter.${M.id}`);

    const data = await send(srv, tokenA, M.id, 'Hello Bob, the hearing moved to Tuesday.');
    assert.equal(data.message, 'Hello Bob, the hearing moved to Tuesday.');
    assert.equal(data.client_matter_id, M.id);
    assert.equal(data.sender_id, A.id);
    assert.equal(data.sender_name, A.name);

    await waitFor(() => onUser.length >= 1 && onMatter.length >= 1, 5000, 'MessageSent on both channels');
    assert.equal(data.is_read, true, 'the sender\'s own message is read');
    assert.deepEqual(onUser[0].message, asEvent(data), 'MessageSent on private-user.B carries the REST data');
    assert.deepEqual(onMatter[0].message, asEvent(data), 'MessageSent on private-matter.M carries the REST data');
    await ctx.marker(echoB, `private-user.${B.id}`);
    await ctx.marker(echoB, `private-matter.${M.id}`);
    assert.equal(onUser.length + onMatter.length, 2, 'MessageSent events (one per channel)');
  }));

  it('read receipt: PUT /messages/{id}/read -> MessageReceived to the sender, UnreadCountUpdated to the reader', T, scenario(server, async (ctx) => {
    const { A, B, M } = fixtures();
    const srv = ctx.server;
    const tokenA = await login(srv, A);
    const tokenB = await login(srv, B);

    const echoA = await chatEcho(ctx, tokenA, 'alice');
    const receipts = [];
    const chA = echoA.private(`user.${A.id}`).listen('MessageReceived', (e) => receipts.push(e));
    await subscribedVia(chA, `private-user.${A.id}`);

    const echoB = await chatEcho(ctx, tokenB, 'bob', { broadcaster: 'pusher' });
    const counts = [];
    const sent = [];
    const chB = echoB.private(`user.${B.id}`)
      .listen('UnreadCountUpdated', (e) => counts.push(e))
      .listen('MessageSent', (e) => sent.push(e));
    await subscribedVia(chB, `private-user.${B.id}`);

    const before0 = await unreadCount(srv, tokenB);
    assert.equal(before0.user_id, B.id);
    const was = before0.matters[String(M.id)] || 0;

    const msg = await send(srv, tokenA, M.id, 'Please confirm you read this.');
    await waitFor(() => sent.find((e) => e.message.id === msg.id), 5000, 'MessageSent at Bob');
    // The send raises Bob's count by one; the event says so.
    const raised = await waitFor(() => counts.find((c) => c.matters[String(M.id)] === was + 1), 5000,
      `UnreadCountUpdated with matter ${M.id} at ${was + 1}`);
    assert.equal(raised.user_id, B.id);
    assert.equal(raised.unread_count, before0.unread_count + 1);

    const res = await api(srv, 'PUT', `/api/messages/${msg.id}/read`, { token: tokenB });
    const receipt = expectStatus(res, 200, 'mark read').data;
    assert.equal(receipt.message_id, msg.id);
    assert.equal(receipt.reader_id, B.id);
    assert.equal(receipt.client_matter_id, M.id);
    assert.equal(typeof receipt.read_at, 'string');

    // The sender's receipt, on private-user.A, equals the PUT answer.
    await waitFor(() => receipts.find((r) => r.message_id === msg.id), 5000, 'MessageReceived at Alice');
    assert.deepEqual(receipts.filter((r) => r.message_id === msg.id), [receipt]);

    // The reader's count, on private-user.B, equals GET /api/messages/unread-count.
    const after0 = await unreadCount(srv, tokenB);
    assert.equal(after0.matters[String(M.id)], was);
    assert.equal(after0.unread_count, before0.unread_count);
    await waitFor(() => counts.length >= 2 && counts.at(-1).matters[String(M.id)] === was, 5000,
      'UnreadCountUpdated after the read');
    assert.deepEqual(counts.at(-1), after0);
    assert.deepEqual(Object.keys(counts.at(-1)).sort(), ['matters', 'unread_count', 'user_id']);

    // Reading again answers the same read_at and broadcasts nothing.
    const again = expectStatus(await api(srv, 'PUT', `/api/messages/${msg.id}/read`, { token: tokenB }), 200, 'mark read again').data;
    assert.deepEqual(again, receipt);
    await ctx.marker(echoA, `private-user.${A.id}`);
    assert.equal(receipts.filter((r) => r.message_id === msg.id).length, 1, 'receipts for a repeated read');
  }));

  it('delete: DELETE /messages/{id} -> MessageDeleted over Echo, the count back down, the message kept as deleted', T, scenario(server, async (ctx) => {
    const { A, B, M } = fixtures();
    const srv = ctx.server;
    const tokenA = await login(srv, A);
    const tokenB = await login(srv, B);

    const echoB = await chatEcho(ctx, tokenB, 'bob');
    const deleted = [];
    const counts = [];
    const sent = [];
    const chB = echoB.private(`user.${B.id}`)
      .listen('MessageSent', (e) => sent.push(e.message))
      .listen('MessageDeleted', (e) => deleted.push(e.message))
      .listen('UnreadCountUpdated', (e) => counts.push(e));
    await subscribedVia(chB, `private-user.${B.id}`);
    const before0 = await unreadCount(srv, tokenB);

    const kept = await send(srv, tokenA, M.id, 'This one stays.');
    const msg = await send(srv, tokenA, M.id, 'Sent to the wrong matter, sorry.');
    await waitFor(() => sent.find((m) => m.id === msg.id), 5000, 'MessageSent at Bob');
    // Bob has read the first one: the ticks are in the history Ada loads.
    const receipt = expectStatus(await api(srv, 'PUT', `/api/messages/${kept.id}/read`, { token: tokenB }), 200, 'read').data;
    const history = expectStatus(await api(srv, 'GET', `/api/messages?client_matter_id=${M.id}&after_id=${kept.id - 1}`, { token: tokenA }), 200, 'history').data;
    assert.deepEqual(history.map((m) => [m.id, m.is_read, m.read_at, m.read_by]),
      [[kept.id, true, receipt.read_at, [{ user_id: B.id, read_at: receipt.read_at }]], [msg.id, true, null, []]]);

    expectStatus(await api(srv, 'DELETE', `/api/messages/${msg.id}`, { token: tokenB }), 403, 'delete by another member');
    const del = expectStatus(await api(srv, 'DELETE', `/api/messages/${msg.id}`, { token: tokenA }), 200, 'delete').data;
    assert.equal(del.message, '');
    assert.equal(typeof del.deleted_at, 'string');
    await waitFor(() => deleted.find((m) => m.id === msg.id), 5000, 'MessageDeleted at Bob');
    assert.deepEqual(deleted, [del], 'MessageDeleted carries the DELETE answer');
    // Bob had not read it: his count is back where it was, and the event says so.
    await waitFor(() => counts.length > 0 && counts.at(-1).unread_count === before0.unread_count, 5000, 'the count after the delete');
    assert.deepEqual(counts.at(-1), await unreadCount(srv, tokenB));

    // Deleting again changes nothing and sends nothing; the history keeps it, deleted.
    assert.deepEqual(expectStatus(await api(srv, 'DELETE', `/api/messages/${msg.id}`, { token: tokenA }), 200, 'again').data, del);
    expectStatus(await api(srv, 'PUT', `/api/messages/${msg.id}`, { token: tokenA, body: { message: 'undo' } }), 409, 'edit of a deleted message');
    await ctx.marker(echoB, `private-user.${B.id}`);
    assert.equal(deleted.length, 1, 'one MessageDeleted');
    const after = expectStatus(await api(srv, 'GET', `/api/messages?client_matter_id=${M.id}&after_id=${kept.id}`, { token: tokenB }), 200, 'history').data;
    assert.deepEqual(after, [del]);
  }));

  it('toOthers: X-Socket-ID: echo.socketId() keeps the sender\'s own socket out; other members still get it', T, scenario(server, async (ctx) => {
    const { A, B, M } = fixtures();
    const srv = ctx.server;
    const tokenA = await login(srv, A);
    const tokenB = await login(srv, B);

    const echoA = await chatEcho(ctx, tokenA, 'alice');
    const echoB = await chatEcho(ctx, tokenB, 'bob');
    const atA = [];
    const atB = [];
    const chA = echoA.private(`matter.${M.id}`).listen('MessageSent', (e) => atA.push(e.message));
    const chB = echoB.private(`matter.${M.id}`).listen('MessageSent', (e) => atB.push(e.message));
    await subscribedVia(chA, 'alice private-matter');
    await subscribedVia(chB, 'bob private-matter');

    // Control: without the header the sender's socket on the matter channel gets it too.
    const plain = await send(srv, tokenA, M.id, 'without X-Socket-ID');
    await waitFor(() => atA.find((m) => m.id === plain.id) && atB.find((m) => m.id === plain.id), 5000,
      'the control message at both sockets');

    const socketId = echoA.socketId();
    assert.match(socketId, /^\d+\.\d+$/);
    const others = await send(srv, tokenA, M.id, 'with X-Socket-ID', { 'X-Socket-ID': socketId });
    await waitFor(() => atB.find((m) => m.id === others.id), 5000, 'the toOthers message at Bob');
    assert.deepEqual(atB.find((m) => m.id === others.id), asEvent(others));
    await ctx.marker(echoA, `private-matter.${M.id}`);
    assert.equal(atA.filter((m) => m.id === others.id).length, 0, 'toOthers messages at the sender\'s socket');
  }));

  it('presence: join(matter.{id}).here() lists the members present with id and name', T, scenario(server, async (ctx) => {
    const { A, B, M } = fixtures();
    const srv = ctx.server;
    const echoA = await chatEcho(ctx, await login(srv, A), 'alice');
    const echoB = await chatEcho(ctx, await login(srv, B), 'bob', { broadcaster: 'pusher' });

    let hereA = null;
    const joining = [];
    echoA.join(`matter.${M.id}`).here((users) => { hereA = users; }).joining((u) => joining.push(u))
      .error((e) => { hereA = { error: e }; });
    await waitFor(() => hereA, 5000, 'here() for Alice');
    assert.deepEqual(hereA, [{ id: A.id, name: A.name }]);

    let hereB = null;
    echoB.join(`matter.${M.id}`).here((users) => { hereB = users; }).error((e) => { hereB = { error: e }; });
    await waitFor(() => hereB, 5000, 'here() for Bob');
    assert.deepEqual([...hereB].sort((x, y) => x.id - y.id),
      [{ id: A.id, name: A.name }, { id: B.id, name: B.name }].sort((x, y) => x.id - y.id));
    await waitFor(() => joining.length === 1, 5000, 'joining(Bob) at Alice');
    assert.deepEqual(joining[0], { id: B.id, name: B.name });
  }));

  it('a non-member is refused: private-matter / presence-matter / someone else\'s private-user give subscription_error 403', T, scenario(server, async (ctx) => {
    const { B, C, M } = fixtures();
    const srv = ctx.server;
    const echoC = await chatEcho(ctx, await login(srv, C), 'carol');

    const e1 = await refusedVia(echoC.private(`matter.${M.id}`), `carol private-matter.${M.id}`);
    assert.equal(e1.status, 403, `private-matter refusal: ${show(e1)}`);
    assert.equal(e1.type, 'AuthError');

    const e2 = await refusedVia(echoC.private(`user.${B.id}`), `carol private-user.${B.id}`);
    assert.equal(e2.status, 403, `private-user refusal: ${show(e2)}`);

    let here = null;
    let err = null;
    echoC.join(`matter.${M.id}`).here((u) => { here = u; }).error((e) => { err = e; });
    await waitFor(() => err || here, 5000, 'presence refusal for Carol');
    assert.equal(here, null, 'Carol must not see who is present');
    assert.equal(err.status, 403, `presence-matter refusal: ${show(err)}`);

    // Her own user channel still works on the same connection.
    await subscribedVia(echoC.private(`user.${C.id}`), `carol private-user.${C.id}`);
  }));

  it('REST refusals seen by a real client: 401 bad token, 422 empty message, 403 non-member send', T, scenario(server, async (ctx) => {
    const { A, C, M } = fixtures();
    const srv = ctx.server;

    for (const token of ['1|not-the-secret-at-all', 'garbage', null]) {
      const res = await api(srv, 'POST', '/api/messages/send', { token, body: { message: 'hi', client_matter_id: M.id } });
      assert.equal(res.status, 401, `token ${show(token)}: ${show(res.body)}`);
      assert.deepEqual(res.body, { message: 'Unauthenticated.' });
    }
    const resU = await api(srv, 'GET', '/api/messages/unread-count', { token: '999999|nope' });
    assert.equal(resU.status, 401);

    const tokenA = await login(srv, A);
    const empty = await api(srv, 'POST', '/api/messages/send', { token: tokenA, body: { message: '   ', client_matter_id: M.id } });
    assert.equal(empty.status, 422, show(empty.body));
    assert.equal(typeof empty.body.message, 'string');
    assert.deepEqual(Object.keys(empty.body.errors), ['message']);
    assert.ok(Array.isArray(empty.body.errors.message) && empty.body.errors.message.length >= 1, show(empty.body));
    assert.equal(empty.body.message, empty.body.errors.message[0]);

    const both = await api(srv, 'POST', '/api/messages/send', { token: tokenA, body: {} });
    assert.equal(both.status, 422, show(both.body));
    assert.deepEqual(Object.keys(both.body.errors).sort(), ['client_matter_id', 'message']);
    assert.match(both.body.message, /\(and 1 more error\)$/);

    const badLogin = await api(srv, 'POST', '/api/auth/login', { body: { email: A.email, password: 'wrong' } });
    assert.equal(badLogin.status, 422, show(badLogin.body));
    assert.ok(badLogin.body.errors.email, show(badLogin.body));

    const tokenC = await login(srv, C);
    const forbidden = await api(srv, 'POST', '/api/messages/send', { token: tokenC, body: { message: 'let me in', client_matter_id: M.id } });
    assert.equal(forbidden.status, 403, show(forbidden.body));
    assert.deepEqual(forbidden.body, { message: 'This action is unauthorized.' });
    const listC = await api(srv, 'GET', `/api/messages?client_matter_id=${M.id}`, { token: tokenC });
    assert.equal(listC.status, 403, show(listC.body));
    const msg = await send(srv, tokenA, M.id, 'members only');
    const readC = await api(srv, 'PUT', `/api/messages/${msg.id}/read`, { token: tokenC });
    assert.equal(readC.status, 403, show(readC.body));
    const readMissing = await api(srv, 'PUT', `/api/messages/${msg.id + 100000}/read`, { token: tokenA });
    assert.equal(readMissing.status, 404, show(readMissing.body));
  }));

  it('catch-up: after a disconnect, GET /api/messages?after_id=<last seen> returns exactly what was missed, oldest first', T, scenario(server, async (ctx) => {
    const { A, B, M } = fixtures();
    const srv = ctx.server;
    const tokenA = await login(srv, A);
    const tokenB = await login(srv, B);

    const echoB = await chatEcho(ctx, tokenB, 'bob');
    const seen = [];
    const ch = echoB.private(`matter.${M.id}`).listen('MessageSent', (e) => seen.push(e.message));
    await subscribedVia(ch, 'bob private-matter');
    const last = await send(srv, tokenA, M.id, 'before the tunnel');
    await waitFor(() => seen.find((m) => m.id === last.id), 5000, 'the last live message');
    const lastSeenId = seen.at(-1).id;
    assert.equal(lastSeenId, last.id);

    echoB.disconnect();
    await waitFor(() => echoB.connector.pusher.connection.state === 'disconnected', 3000, 'Bob disconnected');

    const missed = [];
    for (const text of ['missed one', 'missed two', 'missed three']) missed.push(await send(srv, tokenA, M.id, text));
    // No wait needed: pusher-js closed the socket and dropped its listeners
    // on disconnect(), so nothing can arrive.
    assert.equal(seen.length, 1, 'a disconnected client gets nothing live');

    const res = await api(srv, 'GET', `/api/messages?client_matter_id=${M.id}&after_id=${lastSeenId}`, { token: tokenB });
    const page = expectStatus(res, 200, 'catch-up list');
    // previous_id is in the send's answer (and MessageSent) only, not in a listed message.
    const listed = missed.map(({ previous_id: _, ...m }) => asEvent(m));
    assert.deepEqual(page.data, listed, 'exactly the 3 missed messages, oldest first, unread, as the send answers had them');
    assert.equal(page.total, 3);
    const next = expectStatus(await api(srv, 'GET', `/api/messages?client_matter_id=${M.id}&after_id=${missed[2].id}`, { token: tokenB }),
      200, 'nothing after the last');
    assert.deepEqual(next.data, []);
  }));
});
