// Parley demo chat: log in over REST, listen with laravel-echo + pusher-js.
//
// Query parameters prefill the form: ?server=http://127.0.0.1:8080&key=APP_KEY&email=...
// Everything the page does is what a Laravel front end does against Parley:
//   POST /api/auth/login                       -> bearer token
//   Echo (broadcaster 'reverb') authorized by  POST /api/broadcasting/auth
//   private-user.{me}: MessageSent, MessageReceived (read receipts),
//                      MessageUpdated, UnreadCountUpdated
//   GET /api/matters, GET /api/messages, GET /api/messages/unread-count,
//   POST /api/messages/send (X-Socket-ID), PUT /api/messages/{id}/read
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(window.location.search);

  const state = {
    server: '', // e.g. http://127.0.0.1:8080, no trailing slash
    key: '',
    token: null,
    me: null,
    echo: null,
    matters: [], // [{id, title, unread_count}]
    current: null, // selected matter id
    counts: { unread_count: 0, matters: {} },
    readRequested: new Set(), // message ids we already sent PUT /read for
  };

  // ---------------------------------------------------------------- REST

  async function request(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const socketId = state.echo && state.echo.socketId();
    if (socketId) headers['X-Socket-ID'] = socketId; // Laravel's toOthers()
    const res = await fetch(state.server + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try {
      data = await res.json();
    } catch (_) {
      /* not JSON */
    }
    if (!res.ok) {
      const err = new Error((data && data.message) || 'HTTP ' + res.status);
      err.status = res.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  function showError(id, err) {
    $(id).textContent = err ? (err.message || String(err)) : '';
  }

  // ---------------------------------------------------------------- rendering

  function renderMatters() {
    const ul = $('matters');
    ul.textContent = '';
    for (const m of state.matters) {
      const li = document.createElement('li');
      li.dataset.matterId = String(m.id);
      if (m.id === state.current) li.className = 'current';
      const btn = document.createElement('button');
      btn.type = 'button';
      const title = document.createElement('span');
      title.textContent = m.title;
      const badge = document.createElement('span');
      badge.className = 'badge';
      const n = unreadFor(m.id);
      badge.dataset.count = String(n);
      badge.textContent = String(n);
      btn.append(title, badge);
      btn.addEventListener('click', () => selectMatter(m.id));
      li.append(btn);
      ul.append(li);
    }
    if (state.matters.length === 0) {
      const li = document.createElement('li');
      li.className = 'empty';
      li.textContent = 'You are not a member of any matter yet.';
      ul.append(li);
    }
  }

  function unreadFor(matterId) {
    const n = state.counts.matters && state.counts.matters[String(matterId)];
    if (typeof n === 'number') return n;
    const m = state.matters.find((x) => x.id === matterId);
    return m ? m.unread_count : 0;
  }

  function messageItem(id) {
    return $('messages').querySelector('li[data-message-id="' + String(Number(id)) + '"]');
  }

  /** Adds (or refreshes) one message in the list, kept in id order. */
  function showMessage(m) {
    const list = $('messages');
    const placeholder = list.querySelector('li.empty');
    if (placeholder) placeholder.remove();
    let li = messageItem(m.id);
    if (!li) {
      li = document.createElement('li');
      li.dataset.messageId = String(m.id);
      let next = null;
      for (const other of list.children) {
        if (Number(other.dataset.messageId) > m.id) {
          next = other;
          break;
        }
      }
      list.insertBefore(li, next);
    }
    li.dataset.sender = m.sender_name;
    li.title = m.sender_name + ' · ' + new Date(m.created_at).toLocaleString() + (m.edited_at ? ' (edited)' : '');
    if (m.sender_id === state.me.id) li.classList.add('mine');
    li.textContent = m.message; // never innerHTML: message text is untrusted
    list.scrollTop = list.scrollHeight;
    return li;
  }

  function setUnread(counts) {
    state.counts = { unread_count: counts.unread_count, matters: counts.matters || {} };
    $('unread-count').textContent = String(counts.unread_count);
    for (const li of $('matters').querySelectorAll('li[data-matter-id]')) {
      const badge = li.querySelector('.badge');
      const n = unreadFor(Number(li.dataset.matterId));
      badge.dataset.count = String(n);
      badge.textContent = String(n);
    }
    document.title = (counts.unread_count > 0 ? '(' + counts.unread_count + ') ' : '') + 'Parley demo chat';
  }

  // ---------------------------------------------------------------- reading

  async function markRead(m) {
    if (m.sender_id === state.me.id || state.readRequested.has(m.id)) return;
    state.readRequested.add(m.id);
    try {
      await request('PUT', '/api/messages/' + m.id + '/read');
    } catch (err) {
      state.readRequested.delete(m.id);
      showError('chat-error', err);
    }
  }

  async function selectMatter(id) {
    state.current = id;
    const matter = state.matters.find((m) => m.id === id);
    $('matter-title').textContent = matter ? matter.title : 'Messages';
    renderMatters();
    const list = $('messages');
    list.textContent = '';
    try {
      const page = await request('GET', '/api/messages?client_matter_id=' + id + '&limit=50');
      if (state.current !== id) return; // another matter was picked meanwhile
      const msgs = page.data.slice().reverse(); // the API answers newest first
      for (const m of msgs) showMessage(m);
      if (msgs.length === 0 && !list.firstChild) {
        const li = document.createElement('li');
        li.className = 'empty';
        li.textContent = 'No messages yet.';
        list.append(li);
      }
      // The API does not say which of these this user has read; the newest
      // `unread` messages from others are the ones the count is about.
      let unread = unreadFor(id);
      for (let i = msgs.length - 1; i >= 0 && unread > 0; i--) {
        if (msgs[i].sender_id !== state.me.id) {
          unread--;
          await markRead(msgs[i]);
        }
      }
    } catch (err) {
      showError('chat-error', err);
    }
  }

  // ---------------------------------------------------------------- realtime

  function connect() {
    const url = new URL(state.server);
    const tls = url.protocol === 'https:';
    const port = Number(url.port) || (tls ? 443 : 80);
    const EchoClass = window.Echo && (window.Echo.default || window.Echo);
    if (typeof EchoClass !== 'function' || typeof window.Pusher !== 'function') {
      throw new Error('laravel-echo or pusher-js did not load (vendor/echo.iife.js, vendor/pusher.min.js)');
    }
    state.echo = new EchoClass({
      broadcaster: 'reverb',
      key: state.key,
      wsHost: url.hostname,
      wsPort: port,
      wssPort: port,
      forceTLS: tls,
      enabledTransports: ['ws', 'wss'],
      Pusher: window.Pusher,
      authEndpoint: state.server + '/api/broadcasting/auth',
      auth: { headers: { Authorization: 'Bearer ' + state.token } },
    });
    const conn = state.echo.connector.pusher.connection;
    const status = $('status');
    const setState = (s) => {
      status.textContent = s;
      status.dataset.state = s;
    };
    setState(conn.state);
    conn.bind('state_change', (s) => setState(s.current));

    state.echo.private('user.' + state.me.id)
      .listen('MessageSent', (e) => {
        const m = e.message;
        if (!state.matters.some((x) => x.id === m.client_matter_id)) {
          loadMatters(); // added to a matter since we logged in
          return;
        }
        if (m.client_matter_id === state.current) {
          showMessage(m);
          markRead(m);
        }
      })
      .listen('MessageUpdated', (e) => {
        if (messageItem(e.message.id)) showMessage(e.message);
      })
      .listen('MessageReceived', (r) => {
        const li = messageItem(r.message_id);
        if (li) li.classList.add('read');
      })
      .listen('UnreadCountUpdated', (c) => setUnread(c))
      .error((e) => showError('chat-error', new Error('Subscription refused: ' + (e && (e.error || e.status)))));
  }

  async function loadMatters() {
    const res = await request('GET', '/api/matters');
    state.matters = res.data;
    renderMatters();
  }

  // ---------------------------------------------------------------- forms

  async function onLogin(ev) {
    ev.preventDefault();
    showError('login-error', null);
    const button = $('login-button');
    button.disabled = true;
    try {
      const server = $('server').value.trim().replace(/\/+$/, '');
      try {
        const u = new URL(server);
        if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
      } catch (_) {
        throw new Error('The server URL must look like http://127.0.0.1:8080');
      }
      state.server = server;
      state.key = $('key').value.trim();
      if (!state.key) throw new Error('The app key is required (PARLEY_APP_KEY; parley serve prints it).');
      const res = await request('POST', '/api/auth/login', {
        email: $('email').value.trim(),
        password: $('password').value,
      });
      state.token = res.token;
      state.me = res.user;
      $('password').value = '';
      $('me').textContent = res.user.name;
      connect();
      await loadMatters();
      setUnread(await request('GET', '/api/messages/unread-count'));
      $('login-card').hidden = true;
      $('chat').hidden = false;
      $('logout').hidden = false;
      const wanted = Number(params.get('matter'));
      const first = state.matters.find((m) => m.id === wanted) || state.matters[0];
      if (first) await selectMatter(first.id);
      $('message-input').focus();
    } catch (err) {
      if (err.status === 422 && err.data && err.data.errors) {
        err.message = Object.values(err.data.errors).flat()[0] || err.message;
      }
      if (err instanceof TypeError) {
        err.message = 'Cannot reach ' + state.server + ' (is parley serve running there, and does it allow this page\'s origin?)';
      }
      showError('login-error', err);
      disconnect();
    } finally {
      button.disabled = false;
    }
  }

  async function onSend(ev) {
    ev.preventDefault();
    showError('chat-error', null);
    const input = $('message-input');
    const text = input.value.trim();
    if (!text || !state.current) return;
    $('send-button').disabled = true;
    try {
      const res = await request('POST', '/api/messages/send', { message: text, client_matter_id: state.current });
      input.value = '';
      if (res.data.client_matter_id === state.current) showMessage(res.data);
    } catch (err) {
      showError('chat-error', err);
    } finally {
      $('send-button').disabled = false;
      input.focus();
    }
  }

  function disconnect() {
    if (state.echo) {
      try {
        state.echo.disconnect();
      } catch (_) {
        /* ignore */
      }
    }
    state.echo = null;
    state.token = null;
  }

  async function onLogout() {
    try {
      await request('POST', '/api/auth/logout');
    } catch (_) {
      /* the token is dropped either way */
    }
    disconnect();
    state.matters = [];
    state.current = null;
    state.readRequested.clear();
    $('messages').textContent = '';
    $('me').textContent = '';
    $('status').textContent = 'disconnected';
    $('status').dataset.state = 'disconnected';
    $('chat').hidden = true;
    $('logout').hidden = true;
    $('login-card').hidden = false;
  }

  // ---------------------------------------------------------------- start

  $('server').value = params.get('server') || 'http://127.0.0.1:8080';
  $('key').value = params.get('key') || '';
  $('email').value = params.get('email') || '';
  $('login-form').addEventListener('submit', onLogin);
  $('send-form').addEventListener('submit', onSend);
  $('logout').addEventListener('click', onLogout);
  // For tests and the curious: read-only view of the page's state.
  window.parleyDemo = { state };
})();
