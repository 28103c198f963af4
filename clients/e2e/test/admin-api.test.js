// The admin API end to end, as a Laravel (or any) backend uses it: the
// official `pusher` server SDK's generic get({path, params}) and
// post({path, body}) sign the requests with the app secret, exactly as they
// sign trigger(). A user, a token (what a Blade template gets from
// createToken("chat")), a matter and its members are made through it, and
// pusher-js then logs in with that token through /api/broadcasting/auth.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { scenario, show, subscribed, useServer, waitFor } from './helpers.js';

const T = { timeout: 30000 };
const UNREAD = 'App\\Events\\UnreadCountUpdated';
const SENT = 'App\\Events\\MessageSent';

/** GET /apps/{id}/admin{path} through the SDK; the decoded answer. */
async function adminGet(sdk, path, params = {}) {
  const res = await sdk.get({ path: `/admin${path}`, params });
  assert.equal(res.status, 200, `GET ${path}`);
  return res.json();
}

/** POST /apps/{id}/admin{path} through the SDK; {status, body}. */
async function adminPost(sdk, path, body = {}) {
  const res = await sdk.post({ path: `/admin${path}`, body });
  return { status: res.status, body: await res.json() };
}

/** The SDK's RequestError for a refused request (fails if it succeeded). */
async function refusal(promise) {
  try {
    const res = await promise;
    assert.fail(`expected a refusal, got ${res.status}`);
  } catch (err) {
    if (err.code === 'ERR_ASSERTION') throw err;
    return err;
  }
}

async function rest(srv, method, path, { token, body } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`http://${srv.host}:${srv.port}${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

describe('admin API through the pusher SDK', () => {
  const server = useServer({ before, after });

  it('a backend creates a user, a token and a matter; pusher-js logs in with the token', T, scenario(server, async (ctx) => {
    const srv = ctx.server;
    const sdk = ctx.sdk();

    const ann = await adminPost(sdk, '/users', { name: 'Ann', email: 'ann@admin.test', password: 'correct horse battery' });
    assert.equal(ann.status, 201, show(ann.body));
    // The Laravel app's own user: no password, found again by its id there.
    const bob = await adminPost(sdk, '/users', { name: 'Bob', email: 'bob@admin.test', external_id: 7 });
    assert.equal(bob.status, 201, show(bob.body));
    assert.equal(bob.body.has_password, false);
    assert.deepEqual((await adminGet(sdk, '/users', { external_id: '7' })).users.map((u) => u.id), [bob.body.id]);

    const tok = await adminPost(sdk, `/users/${bob.body.id}/tokens`, { ttl_seconds: 3600 });
    assert.equal(tok.status, 201, show(tok.body));
    assert.match(tok.body.token, new RegExp(`^${tok.body.id}\\|[A-Za-z0-9]{40}$`));
    assert.equal(tok.body.user_id, bob.body.id);

    const matter = await adminPost(sdk, '/matters', { title: 'Smith v Jones', member_ids: [ann.body.id] });
    assert.equal(matter.status, 201, show(matter.body));
    const added = await adminPost(sdk, `/matters/${matter.body.id}/members`, { user_id: bob.body.id });
    assert.equal(added.status, 200);
    assert.equal(added.body.added, true);
    const shown = await adminGet(sdk, `/matters/${matter.body.id}`);
    assert.deepEqual(shown.members.map((u) => u.id), [ann.body.id, bob.body.id]);

    // Bob's browser: pusher-js with the token, authorized by Parley itself.
    const client = await ctx.pusher({
      name: 'bob',
      extra: {
        channelAuthorization: {
          endpoint: `http://${srv.host}:${srv.port}/api/broadcasting/auth`,
          transport: 'ajax',
          headers: { Authorization: `Bearer ${tok.body.token}` },
        },
      },
    });
    const userCh = await subscribed(client, `private-user.${bob.body.id}`);
    const matterCh = await subscribed(client, `private-matter.${matter.body.id}`);
    const sent = [];
    const unread = [];
    matterCh.bind(SENT, (e) => sent.push(e));
    userCh.bind(UNREAD, (e) => unread.push(e));

    // Ann logs in with the password the admin API set and writes to Bob.
    const login = await rest(srv, 'POST', '/api/auth/login', { body: { email: 'ann@admin.test', password: 'correct horse battery' } });
    assert.equal(login.status, 200, show(login.body));
    const msg = await rest(srv, 'POST', '/api/messages/send', { token: login.body.token, body: { message: 'Hello Bob', client_matter_id: matter.body.id } });
    assert.equal(msg.status, 201, show(msg.body));
    await waitFor(() => sent.length === 1 && unread.some((e) => e.unread_count === 1), 5000, 'MessageSent and unread 1 at Bob');
    assert.equal(sent[0].message.message, 'Hello Bob');

    // Removed from the matter, Bob's unread count drops at once.
    const removed = await adminPost(sdk, `/matters/${matter.body.id}/members/${bob.body.id}/delete`);
    assert.equal(removed.body.removed, true);
    await waitFor(() => unread.length && unread[unread.length - 1].unread_count === 0, 5000, 'UnreadCountUpdated 0 after removal');
    assert.deepEqual(unread[unread.length - 1].matters, {});

    // Revoked, the token no longer authorizes anything.
    const revoked = await adminPost(sdk, `/tokens/${tok.body.id}/revoke`);
    assert.equal(revoked.body.revoked, true);
    const me = await rest(srv, 'GET', '/api/user', { token: tok.body.token });
    assert.equal(me.status, 401);
    const listed = await adminGet(sdk, `/users/${bob.body.id}/tokens`);
    assert.deepEqual(listed.tokens, []);
  }));

  it('a request signed with a wrong secret is refused with 401 and writes nothing', T, scenario(server, async (ctx) => {
    const wrong = ctx.sdk({ secret: 'not-the-secret' });
    const err = await refusal(wrong.post({ path: '/admin/users', body: { name: 'Mallory', email: 'mallory@admin.test' } }));
    assert.equal(err.status, 401, show(err));
    assert.match(err.body, /auth_signature/);
    const err2 = await refusal(wrong.get({ path: '/admin/users', params: { email: 'ann@admin.test' } }));
    assert.equal(err2.status, 401);

    const sdk = ctx.sdk();
    assert.deepEqual((await adminGet(sdk, '/users', { email: 'mallory@admin.test' })).users, []);
    // Validation answers Laravel's 422 shape through the SDK too.
    const bad = await refusal(sdk.post({ path: '/admin/users', body: { name: 'Short', email: 'short@admin.test', password: 'short' } }));
    assert.equal(bad.status, 422);
    assert.match(JSON.parse(bad.body).errors.password[0], /at least 8 characters/);
  }));
});
