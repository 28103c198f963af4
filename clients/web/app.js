// Parley demo chat, on the RealtimeChat SDK (clients/js).
//
// Query parameters prefill the login form: ?server=http://127.0.0.1:8080&key=APP_KEY&email=…&matter=ID.
// The session (server, key, token) is kept in sessionStorage, so a reload stays logged in.
// Everything it does goes through the SDK: REST under {server}/api, one WebSocket
// (laravel-echo + pusher-js) authorized by /api/broadcasting/auth.
import { RealtimeChat, NetworkError } from '@parley/realtime-chat';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(window.location.search);
const SESSION_KEY = 'parley-demo-session';
const PAGE = 50; // messages per history request
// Matters whose channels (private-matter and presence-matter) the page joins: the most recently
// active ones and the open one. Each join is a /broadcasting/auth request, and Parley counts those
// against the token's REST limit (60 a minute), on every reconnect too; the other matters still
// get their messages, previews and badges through the user channel.
const LIVE_MATTERS = 10;

const state = {
  server: '',
  key: '',
  token: null,
  me: null,
  chat: null,
  matters: [], // GET /api/matters
  counts: null, // {unread_count, matters}
  current: null, // open matter id
  messages: new Map(), // id -> message, the open matter's
  oldestId: null,
  reachedStart: false,
  loadingOlder: false,
  readUpTo: new Map(), // matter id -> highest id we asked the server to mark read
  readTimer: null,
  editing: null, // id of the message being edited
  online: new Map(), // matter id -> [{id, name}]
  typing: new Map(), // matter id -> Map(userId -> name)
  everConnected: false,
};

// ------------------------------------------------------------------ helpers

function showError(id, err) {
  $(id).textContent = err ? (err.message || String(err)) : '';
}

function banner(text) {
  const el = $('conn-error');
  el.textContent = text || '';
  el.hidden = !text;
}

function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const now = new Date();
  const hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === now.toDateString()) return hm;
  return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${hm}`;
}

function unreadFor(matterId) {
  const n = state.counts && state.counts.matters && state.counts.matters[String(matterId)];
  if (typeof n === 'number') return n;
  const m = state.matters.find((x) => x.id === matterId);
  return (m && m.unread_count) || 0;
}

function isMine(m) {
  return Number(m.sender_id) === Number(state.me.id);
}

/** Read by someone else: read_by from the API or live receipts, or read_at (one-to-one). */
function isReadByOthers(m) {
  if (m._read) return true;
  if (Array.isArray(m.read_by) && m.read_by.some((r) => Number(r.user_id) !== Number(state.me.id))) return true;
  return Boolean(m.read_at);
}

function beep() {
  try {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    state.audio = state.audio || new Ctx();
    const ctx = state.audio;
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.08, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.25);
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.25);
  } catch {
    /* no audio: no sound */
  }
}

// ------------------------------------------------------------------ matter list

function sortMatters() {
  const lastId = (m) => (m.last_message ? Number(m.last_message.id) : 0);
  state.matters.sort((a, b) => lastId(b) - lastId(a)); // stable: ties keep the server's order
}

function someoneElseOnline(matterId) {
  return (state.online.get(matterId) || []).some((u) => Number(u.id) !== Number(state.me.id));
}

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
    title.className = 'title';
    const dot = document.createElement('span');
    dot.className = 'dot';
    dot.dataset.online = String(someoneElseOnline(m.id));
    dot.title = dot.dataset.online === 'true' ? 'someone is online' : 'nobody else online';
    const name = document.createElement('span');
    name.textContent = m.title;
    title.append(dot, name);
    const when = document.createElement('span');
    when.className = 'when';
    const preview = document.createElement('span');
    preview.className = 'preview';
    const last = m.last_message;
    if (last) {
      when.textContent = fmtTime(last.created_at);
      preview.textContent = last.deleted_at ? 'Message deleted' : `${isMine(last) ? 'You' : last.sender_name}: ${last.message}`;
    } else {
      preview.textContent = 'No messages yet';
    }
    const badge = document.createElement('span');
    badge.className = 'badge';
    const n = unreadFor(m.id);
    badge.dataset.count = String(n);
    badge.textContent = String(n);
    btn.append(title, when, preview, badge);
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
  const total = state.counts ? state.counts.unread_count : state.matters.reduce((s, m) => s + (m.unread_count || 0), 0);
  $('unread-count').textContent = String(total);
  document.title = (total > 0 ? `(${total}) ` : '') + 'Parley demo chat';
}

function noteLastMessage(m) {
  const matter = state.matters.find((x) => x.id === Number(m.client_matter_id));
  if (!matter) return false;
  if (!matter.last_message || Number(matter.last_message.id) <= Number(m.id)) matter.last_message = m;
  sortMatters();
  renderMatters();
  return true;
}

// ------------------------------------------------------------------ conversation

function renderMembers() {
  const ul = $('members');
  ul.textContent = '';
  if (!state.current) return;
  const matter = state.matters.find((m) => m.id === state.current);
  const online = state.online.get(state.current) || [];
  const onlineIds = new Set(online.map((u) => String(u.id)));
  // Members from GET /api/matters when the server gives them, else whoever is online.
  const members = (matter && Array.isArray(matter.members) && matter.members.length) ? matter.members : online;
  for (const u of members) {
    const li = document.createElement('li');
    li.dataset.userId = String(u.id);
    const dot = document.createElement('span');
    dot.className = 'dot';
    dot.dataset.online = String(onlineIds.has(String(u.id)));
    const name = document.createElement('span');
    name.textContent = Number(u.id) === Number(state.me.id) ? `${u.name} (you)` : u.name;
    li.append(dot, name);
    ul.append(li);
  }
}

function renderTyping() {
  const el = $('typing');
  const names = state.current ? [...(state.typing.get(state.current) || new Map()).values()] : [];
  el.textContent = names.length === 0 ? '' : names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
}

function notice(text, cls) {
  const li = document.createElement('li');
  li.className = `notice ${cls || ''}`;
  li.textContent = text;
  return li;
}

function messageItem(id) {
  return $('messages').querySelector(`li[data-message-id="${Number(id)}"]`);
}

function fillMessage(li, m, { pending = false, failed = false } = {}) {
  li.className = 'msg';
  if (isMine(m)) li.classList.add('mine');
  if (pending) li.classList.add('pending');
  if (m.deleted_at) li.classList.add('deleted');
  li.textContent = '';
  const sender = document.createElement('span');
  sender.className = 'sender';
  sender.textContent = m.sender_name || (state.me && state.me.name) || '';
  const text = document.createElement('div');
  text.className = 'text';
  text.textContent = m.deleted_at ? 'This message was deleted' : m.message; // never innerHTML: untrusted text
  const meta = document.createElement('div');
  meta.className = 'meta';
  if (m.edited_at && !m.deleted_at) {
    const ed = document.createElement('span');
    ed.className = 'edited';
    ed.textContent = 'edited';
    meta.append(ed);
  }
  const time = document.createElement('time');
  time.className = 'time';
  if (m.created_at) {
    time.dateTime = m.created_at;
    time.title = new Date(m.created_at).toLocaleString();
  }
  time.textContent = pending ? 'queued' : fmtTime(m.created_at);
  meta.append(time);
  if (isMine(m)) {
    const ticks = document.createElement('span');
    ticks.className = 'ticks';
    let s = 'sent';
    if (failed) s = 'failed';
    else if (pending) s = 'pending';
    else if (isReadByOthers(m)) s = 'read';
    ticks.dataset.state = s;
    ticks.textContent = { sent: '✓', read: '✓✓', pending: '…', failed: 'not sent' }[s];
    ticks.title = { sent: 'sent', read: 'read', pending: 'waiting for the connection', failed: 'the server refused it' }[s];
    meta.append(ticks);
    if (!pending && !m.deleted_at) {
      const actions = document.createElement('div');
      actions.className = 'actions';
      const edit = document.createElement('button');
      edit.type = 'button';
      edit.className = 'edit';
      edit.textContent = 'Edit';
      edit.addEventListener('click', () => startEdit(m.id));
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'delete';
      del.textContent = 'Delete';
      del.addEventListener('click', () => deleteMessage(m.id));
      actions.append(edit, del);
      li.append(actions);
    }
  }
  li.append(sender, text, meta);
}

/** Adds or refreshes a stored message in the open conversation, kept in id order. */
function showMessage(m) {
  if (Number(m.client_matter_id) !== state.current) return null;
  const list = $('messages');
  const prev = state.messages.get(Number(m.id));
  if (prev && prev._read) m._read = true;
  state.messages.set(Number(m.id), m);
  list.querySelector('li.empty')?.remove();
  let li = messageItem(m.id);
  if (!li) {
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    li = document.createElement('li');
    li.dataset.messageId = String(m.id);
    let next = list.querySelector('li.pending');
    for (const other of list.querySelectorAll('li[data-message-id]')) {
      if (Number(other.dataset.messageId) > Number(m.id)) {
        next = other;
        break;
      }
    }
    list.insertBefore(li, next);
    fillMessage(li, m);
    if (nearBottom || isMine(m)) list.scrollTop = list.scrollHeight;
  } else {
    fillMessage(li, m);
  }
  if (state.oldestId === null || Number(m.id) < state.oldestId) state.oldestId = Number(m.id);
  return li;
}

function showPending(item) {
  if (item.client_matter_id !== state.current) return;
  const list = $('messages');
  if (list.querySelector(`li[data-client-id="${item.client_message_id}"]`)) return;
  list.querySelector('li.empty')?.remove();
  const li = document.createElement('li');
  li.dataset.clientId = item.client_message_id;
  fillMessage(li, { ...item, sender_id: state.me.id, sender_name: state.me.name }, { pending: true });
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function markReadMaybe() {
  // One request marks everything up to the newest message from others on screen — and never
  // past what the SDK has shown with nothing missing before it (shownUpTo): a message that
  // has not arrived yet (still being caught up) is not marked read with the ones after it.
  clearTimeout(state.readTimer);
  state.readTimer = setTimeout(async () => {
    const id = state.current;
    if (!id || document.hidden || !state.chat) return;
    let newest = 0;
    let unseen = false;
    for (const m of state.messages.values()) {
      if (isMine(m)) continue;
      if (Number(m.id) > newest) newest = Number(m.id);
      if (m.is_read === false) unseen = true;
    }
    const upTo = Math.min(newest, state.chat.shownUpTo(id) || 0);
    const done = state.readUpTo.get(id) || 0;
    if (!upTo || upTo <= done) return; // the rest is marked once the SDK has emitted what is missing
    if (!done && unreadFor(id) === 0 && !unseen) {
      state.readUpTo.set(id, upTo); // opened with nothing unread: no request
      return;
    }
    state.readUpTo.set(id, upTo);
    try {
      const res = await state.chat.markMatterRead(id, upTo); // the SDK clamps it too
      const marked = Number(res.up_to_id) || 0;
      if (marked < upTo) state.readUpTo.set(id, Math.max(done, marked));
      for (const m of state.messages.values()) if (!isMine(m) && Number(m.id) <= marked) m.is_read = true;
    } catch (err) {
      state.readUpTo.set(id, done);
      showError('chat-error', err);
    }
  }, 150);
}

async function selectMatter(id) {
  state.current = id;
  state.chat.subscribeToMatterChannel(id); // a no-op when already joined
  state.messages = new Map();
  state.oldestId = null;
  state.reachedStart = false;
  cancelEdit();
  const matter = state.matters.find((m) => m.id === id);
  $('matter-title').textContent = matter ? matter.title : 'Messages';
  renderMatters();
  renderMembers();
  renderTyping();
  const list = $('messages');
  list.textContent = '';
  showError('chat-error', null);
  try {
    const msgs = await state.chat.loadHistory(id, { limit: PAGE });
    if (state.current !== id) return; // another matter was picked meanwhile
    state.reachedStart = msgs.length < PAGE;
    if (state.reachedStart) list.append(notice('Beginning of the conversation', 'start'));
    for (const m of msgs) showMessage(m);
    for (const item of state.chat.pendingMessages) showPending(item);
    if (!list.querySelector('li.msg')) {
      const li = document.createElement('li');
      li.className = 'empty';
      li.textContent = 'No messages yet.';
      list.append(li);
    }
    list.scrollTop = list.scrollHeight;
    markReadMaybe();
  } catch (err) {
    showError('chat-error', err);
  }
}

async function loadOlder() {
  const id = state.current;
  if (!id || state.loadingOlder || state.reachedStart || !state.oldestId) return;
  state.loadingOlder = true;
  const list = $('messages');
  const loading = notice('Loading older messages…', 'loading');
  list.prepend(loading);
  try {
    const older = await state.chat.loadOlder(id, state.oldestId, { limit: PAGE });
    if (state.current !== id) return;
    const before = list.scrollHeight;
    for (const m of older) showMessage(m);
    if (older.length < PAGE) {
      state.reachedStart = true;
      list.prepend(notice('Beginning of the conversation', 'start'));
    }
    list.scrollTop += list.scrollHeight - before; // keep what the reader was looking at in place
  } catch (err) {
    showError('chat-error', err);
  } finally {
    loading.remove();
    state.loadingOlder = false;
  }
}

// ------------------------------------------------------------------ edit / delete

function startEdit(id) {
  const m = state.messages.get(Number(id));
  if (!m) return;
  state.editing = Number(id);
  $('send-form').classList.add('editing');
  $('message-input').value = m.message;
  $('send-button').textContent = 'Save';
  $('edit-cancel').hidden = false;
  $('message-input').focus();
}

function cancelEdit() {
  state.editing = null;
  $('send-form').classList.remove('editing');
  $('send-button').textContent = 'Send';
  $('edit-cancel').hidden = true;
}

async function deleteMessage(id) {
  if (!window.confirm('Delete this message for everyone?')) return;
  try {
    const m = await state.chat.deleteMessage(id);
    if (m) showMessage(m);
  } catch (err) {
    showError('chat-error', err);
  }
}

// ------------------------------------------------------------------ the SDK's events

function wire(chat) {
  chat.on('onConnectionStateChange', ({ current }) => {
    $('status').textContent = current;
    $('status').dataset.state = current;
    if (current === 'connected') {
      state.everConnected = true;
      $('offline-banner').hidden = true;
      banner(null);
    } else if (state.everConnected && current !== 'failed') {
      $('offline-banner').hidden = false;
    }
  });
  chat.on('onError', (e) => {
    if (['app_key', 'unauthorized', 'protocol', 'refused'].includes(e.type)) banner(e.message);
    else if (e.type === 'unavailable' && !state.everConnected) banner(e.message);
    else if (e.type === 'send' || e.type === 'catchup' || e.type === 'subscription') showError('chat-error', e);
  });
  chat.on('onQueueChanged', ({ queue }) => {
    $('queued-count').textContent = String(queue.length);
  });
  chat.on('onMessageQueued', ({ item }) => showPending(item));
  chat.on('onMessageSent', ({ message, client_message_id: cid }) => {
    $('messages').querySelector(`li[data-client-id="${cid}"]`)?.remove();
    showMessage(message);
    noteLastMessage(message);
  });
  chat.on('onMessageFailed', ({ item, error }) => {
    const li = $('messages').querySelector(`li[data-client-id="${item.client_message_id}"]`);
    if (li) fillMessage(li, { ...item, sender_id: state.me.id }, { pending: true, failed: true });
    showError('chat-error', error);
  });
  chat.on('onMessageReceived', ({ message, matterId }) => {
    if (!noteLastMessage(message)) loadMatters(); // added to a matter since we logged in
    if (matterId === state.current) {
      showMessage(message);
      markReadMaybe();
    }
  });
  chat.on('onNotification', ({ matterId }) => {
    if (matterId !== state.current || document.hidden) beep();
  });
  chat.on('onMessageUpdated', ({ message }) => {
    if (messageItem(message.id)) showMessage({ ...state.messages.get(Number(message.id)), ...message });
    noteLastMessage(message);
  });
  chat.on('onMessageDeleted', ({ message }) => {
    if (messageItem(message.id)) showMessage({ ...state.messages.get(Number(message.id)), ...message });
    const matter = state.matters.find((x) => x.id === Number(message.client_matter_id));
    if (matter && matter.last_message && Number(matter.last_message.id) === Number(message.id)) {
      matter.last_message = { ...matter.last_message, ...message };
      renderMatters();
    }
  });
  const markMineRead = (pred) => {
    for (const m of state.messages.values()) {
      if (isMine(m) && pred(m) && !m._read) {
        m._read = true;
        const li = messageItem(m.id);
        if (li) fillMessage(li, m);
      }
    }
  };
  chat.on('onMessageRead', (r) => {
    if (Number(r.reader_id) !== Number(state.me.id)) markMineRead((m) => Number(m.id) === Number(r.message_id));
  });
  chat.on('onMessagesRead', (r) => {
    if (Number(r.reader_id) === Number(state.me.id)) return;
    markMineRead((m) => Number(m.client_matter_id) === Number(r.client_matter_id) && Number(m.id) <= Number(r.up_to_id));
  });
  chat.on('onUnreadCountUpdated', (c) => {
    state.counts = { unread_count: c.unread_count, matters: c.matters || {} };
    renderMatters();
  });
  chat.on('onPresenceChanged', ({ matterId, members }) => {
    state.online.set(matterId, members);
    renderMatters();
    if (matterId === state.current) renderMembers();
  });
  chat.on('onTyping', ({ matterId, userId, name, typing }) => {
    const map = state.typing.get(matterId) || new Map();
    if (typing) map.set(userId, name || `user ${userId}`);
    else map.delete(userId);
    state.typing.set(matterId, map);
    if (matterId === state.current) renderTyping();
  });
}

async function loadMatters() {
  state.matters = await state.chat.getMatters();
  sortMatters();
  for (const m of state.matters.slice(0, LIVE_MATTERS)) state.chat.subscribeToMatterChannel(m.id);
  renderMatters();
}

/** Resolves 'connected', 'failed' (app key refused …) or 'timeout'. */
function firstConnection(chat, ms) {
  if (chat.isConnected) return Promise.resolve('connected');
  return new Promise((resolve) => {
    const timer = setTimeout(() => done('timeout'), ms);
    const off = chat.on('onConnectionStateChange', ({ current }) => {
      if (current === 'connected' || current === 'failed') done(current);
    });
    function done(v) {
      clearTimeout(timer);
      off();
      resolve(v);
    }
  });
}

// ------------------------------------------------------------------ log in / out

async function rawLogin(server, email, password) {
  let res;
  try {
    res = await fetch(`${server}/api/auth/login`, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
      body: JSON.stringify({ email, password }),
    });
  } catch {
    throw new Error(`Cannot reach ${server}: is parley serve running there, and does it allow this page's origin (${window.location.origin})?`);
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    /* not JSON */
  }
  if (res.status === 404 || !data) {
    throw new Error(`${server} answered ${res.status} to POST /api/auth/login: is it a Parley server with the chat on?`);
  }
  if (!res.ok) {
    const field = data.errors && Object.values(data.errors).flat()[0];
    throw new Error(field || data.message || `HTTP ${res.status}`);
  }
  return data;
}

async function start(session, { fromForm }) {
  state.server = session.server;
  state.key = session.key;
  state.token = session.token;
  state.me = session.user;
  const url = new URL(state.server);
  const tls = url.protocol === 'https:';
  const chat = new RealtimeChat({
    wsHost: url.hostname,
    wsPort: Number(url.port) || (tls ? 443 : 80),
    forceTLS: tls,
    reverbKey: state.key,
    authToken: state.token,
    userId: state.me.id,
    userName: state.me.name,
    apiBaseUrl: `${state.server}/api`,
  });
  state.chat = chat;
  wire(chat);
  const first = await firstConnection(chat, 8000);
  if (first === 'failed') {
    const msg = $('conn-error').textContent || 'The WebSocket connection was refused.';
    stop();
    throw new Error(msg);
  }
  try {
    await chat.me();
  } catch (err) {
    if (err.status === 401) {
      stop();
      sessionStorage.removeItem(SESSION_KEY);
      if (fromForm) throw err;
      return false;
    }
    if (!(err instanceof NetworkError)) throw err;
  }
  chat.subscribeToUserChannel();
  watchVisibility(chat);
  setupPush(chat);
  $('me').textContent = state.me.name;
  $('login-card').hidden = true;
  $('chat').hidden = false;
  $('logout').hidden = false;
  if (first === 'timeout') banner(`The WebSocket server at ${url.host} does not answer; messages will be queued until it does.`);
  await loadMatters();
  state.counts = await chat.getUnreadCount();
  renderMatters();
  const wanted = Number(params.get('matter'));
  const open = state.matters.find((m) => m.id === wanted) || state.matters[0];
  if (open) await selectMatter(open.id);
  $('message-input').focus();
  return true;
}

// ------------------------------------------------------------------ push notifications

// A hidden tab tells Parley its socket is in the background: messages then come as push
// notifications too, which the service worker (sw.js) shows.
function watchVisibility(chat) {
  const tell = () => {
    if (state.chat === chat) chat.setAppState(document.hidden ? 'background' : 'foreground');
  };
  document.addEventListener('visibilitychange', tell);
  tell();
}

function pushStatus(text) {
  $('push-status').textContent = text || '';
}

// Registers the service worker and, once notifications are allowed, the Web Push
// subscription. The permission needs a click the first time (the button).
async function setupPush(chat) {
  if (!('serviceWorker' in navigator) || !('PushManager' in window) || !('Notification' in window)) {
    pushStatus('This browser has no Web Push.');
    return;
  }
  try {
    state.sw = await navigator.serviceWorker.register('sw.js');
  } catch (err) {
    pushStatus(`No service worker: ${err.message}`);
    return;
  }
  if (Notification.permission === 'granted') await enablePush(chat);
  else if (Notification.permission === 'default') $('push-button').hidden = false;
}

async function enablePush(chat) {
  $('push-button').hidden = true;
  try {
    await chat.enableWebPush(state.sw);
    pushStatus('Notifications on');
  } catch (err) {
    // No push service reachable (or Web Push off on the server): the chat works without it.
    pushStatus(`Notifications unavailable: ${err.message}`);
  }
}

async function onPushButton() {
  const chat = state.chat;
  if (!chat) return;
  if (await Notification.requestPermission() === 'granted') await enablePush(chat);
  else pushStatus('Notifications not allowed');
}

function stop() {
  if (state.chat) {
    try {
      state.chat.disconnect();
    } catch {
      /* ignore */
    }
  }
  state.chat = null;
}

async function onLogin(ev) {
  ev.preventDefault();
  showError('login-error', null);
  banner(null);
  const button = $('login-button');
  button.disabled = true;
  try {
    const server = $('server').value.trim().replace(/\/+$/, '');
    try {
      const u = new URL(server);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
    } catch {
      throw new Error('The server URL must look like http://127.0.0.1:8080');
    }
    const key = $('key').value.trim();
    if (!key) throw new Error('The app key is required (PARLEY_APP_KEY; parley serve prints it).');
    const res = await rawLogin(server, $('email').value.trim(), $('password').value);
    $('password').value = '';
    const session = { server, key, token: res.token, user: res.user };
    await start(session, { fromForm: true });
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  } catch (err) {
    showError('login-error', err);
    banner(null); // shown on the form instead
    stop();
    $('chat').hidden = true;
    $('login-card').hidden = false;
  } finally {
    button.disabled = false;
  }
}

async function onSend(ev) {
  ev.preventDefault();
  showError('chat-error', null);
  const input = $('message-input');
  const text = input.value.trim();
  if (!text || !state.current || !state.chat) return;
  if (state.editing) {
    const id = state.editing;
    try {
      const m = await state.chat.editMessage(id, text);
      showMessage({ ...state.messages.get(id), ...m });
      input.value = '';
      cancelEdit();
    } catch (err) {
      showError('chat-error', err);
    }
    return;
  }
  const cid = crypto.randomUUID();
  input.value = '';
  state.chat.stopTyping(state.current);
  // The SDK queues every send and emits onMessageSent when the server has it.
  const p = state.chat.sendMessage({ message: text, client_matter_id: state.current, client_message_id: cid });
  showPending({ client_message_id: cid, message: text, client_matter_id: state.current });
  p.catch(() => { /* shown by onMessageFailed */ });
  input.focus();
}

async function onLogout() {
  try {
    await state.chat?.unregisterDevice(); // no more pushes to this browser for this user
  } catch {
    /* removed with the token's user anyway when it moves */
  }
  try {
    await state.chat?.request('POST', '/auth/logout');
  } catch {
    /* the token is dropped either way */
  }
  stop();
  sessionStorage.removeItem(SESSION_KEY);
  Object.assign(state, { matters: [], current: null, counts: null, everConnected: false });
  state.messages = new Map();
  state.readUpTo.clear();
  state.online.clear();
  state.typing.clear();
  $('messages').textContent = '';
  $('me').textContent = '';
  $('status').textContent = 'disconnected';
  $('status').dataset.state = 'disconnected';
  $('offline-banner').hidden = true;
  banner(null);
  $('chat').hidden = true;
  $('logout').hidden = true;
  $('login-card').hidden = false;
}

// ------------------------------------------------------------------ start

$('server').value = params.get('server') || 'http://127.0.0.1:8080';
$('key').value = params.get('key') || '';
$('email').value = params.get('email') || '';
$('login-form').addEventListener('submit', onLogin);
$('send-form').addEventListener('submit', onSend);
$('logout').addEventListener('click', onLogout);
$('push-button').addEventListener('click', onPushButton);
$('edit-cancel').addEventListener('click', () => {
  $('message-input').value = '';
  cancelEdit();
});
$('message-input').addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && state.editing) {
    $('message-input').value = '';
    cancelEdit();
  }
});
$('message-input').addEventListener('input', () => {
  if (!state.chat || !state.current || state.editing) return;
  if ($('message-input').value.trim()) state.chat.typing(state.current);
  else state.chat.stopTyping(state.current);
});
$('messages').addEventListener('scroll', () => {
  if ($('messages').scrollTop < 60) loadOlder();
});
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) markReadMaybe();
});
window.addEventListener('online', () => state.chat?.reconnect());

// For tests and the curious: the page's state and its SDK instance.
window.parleyDemo = { state };

const saved = (() => {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
})();
if (saved && saved.token) {
  $('server').value = saved.server;
  $('key').value = saved.key;
  start(saved, { fromForm: false }).catch((err) => {
    showError('login-error', err);
    stop();
    $('chat').hidden = true;
    $('login-card').hidden = false;
  });
}
