// RealtimeChat: the chat SDK for Parley, on laravel-echo + pusher-js.
//
// One instance per logged-in user. It connects one WebSocket (Echo with the
// 'reverb' broadcaster), authorizes private and presence channels through
// POST {apiBaseUrl}/broadcasting/auth with the user's bearer token, and talks
// to the chat REST API under apiBaseUrl. On top of what Echo gives it adds:
//
//   - catch-up: after every reconnect, each subscribed matter is fetched with
//     GET /messages?client_matter_id=&after_id= from the last id the REST API
//     confirmed, so nothing sent while the socket was down is missed, and every
//     message is emitted once (deduplicated by id, live or fetched);
//   - an offline send queue: every send gets a client_message_id and goes
//     through one queue, sent in order, one at a time; a send that fails for
//     want of a network (or a 5xx/429) stays queued and is retried with the
//     same client_message_id, so the server stores it once even when an
//     earlier attempt's answer was lost. The queue is kept in localStorage
//     where there is one (or any storage given), else in memory;
//   - typing indicators (client-typing whispers, throttled), presence per
//     matter (presence-matter.{id}), read receipts and a notification hook.
//
// No build step: this file is an ES module. In Node and bundlers 'pusher-js'
// resolves to the right build by itself (React Native: pass
// `Pusher` from 'pusher-js/react-native' to be explicit).
import EchoDefault from 'laravel-echo';
import PusherDefault from 'pusher-js';

const DEFAULT_NAMESPACE = 'App\\Events';

/** Events `on()` accepts. */
export const EVENTS = Object.freeze([
  'onMessageReceived', // {message, matterId, source: 'live'|'catchup'} — a message from someone else (or your other tab)
  'onMessageSent', // {message, client_message_id, queued} — the server stored one of your sends
  'onMessageQueued', // {item, queue} — a send waits in the offline queue
  'onMessageFailed', // {item, status, error} — the server refused a queued send (4xx); it was dropped
  'onQueueChanged', // {queue} — the pending sends changed
  'onMessageUpdated', // {message} — an edit
  'onMessageDeleted', // {message} — a delete (message.deleted_at set, text removed)
  'onMessageRead', // {message_id, reader_id, read_at, client_matter_id} — a read receipt (MessageReceived)
  'onMessagesRead', // {client_matter_id, reader_id, up_to_id, read_at, count} — read up to a message
  'onUnreadCountUpdated', // {user_id, unread_count, matters}
  'onTyping', // {matterId, userId, name, typing}
  'onPresenceChanged', // {matterId, members: [{id, name}]}
  'onMemberJoined', // {matterId, member}
  'onMemberLeft', // {matterId, member}
  'onNotification', // {message, matterId} — a live message from someone else: play a sound, show a notification
  'onConnectionStateChange', // {previous, current} — pusher-js states plus 'failed' for a refused app key
  'onConnected', // {socketId, reconnected}
  'onDisconnected', // {state}
  'onCatchUp', // {matterId, messages} — what one catch-up fetched (already emitted one by one)
  'onError', // {type, message, code?, status?}
]);

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30000;

function defaultStorage() {
  try {
    if (typeof globalThis.localStorage !== 'undefined' && globalThis.localStorage) {
      const k = '__parley_probe__';
      globalThis.localStorage.setItem(k, '1');
      globalThis.localStorage.removeItem(k);
      return globalThis.localStorage;
    }
  } catch {
    /* private mode, disabled storage: memory */
  }
  return null;
}

function newClientMessageId() {
  if (globalThis.crypto && typeof globalThis.crypto.randomUUID === 'function') return globalThis.crypto.randomUUID();
  // React Native without a crypto polyfill: good enough for an idempotency key per sender.
  const hex = (n) => Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join('');
  return `${hex(8)}-${hex(4)}-4${hex(3)}-${hex(4)}-${hex(12)}`;
}

/** An HTTP error from the chat API: status, Laravel's message, and the JSON body. */
export class ChatApiError extends Error {
  constructor(status, body, method, path) {
    const msg = (body && body.message) || `HTTP ${status}`;
    const firstField = body && body.errors && Object.values(body.errors).flat()[0];
    super(status === 422 && firstField ? firstField : msg);
    this.name = 'ChatApiError';
    this.status = status;
    this.body = body;
    this.method = method;
    this.path = path;
  }
}

/** The server could not be reached (DNS, refused, reset, CORS, timeout). */
export class NetworkError extends Error {
  constructor(cause, url) {
    super(`Cannot reach ${url}: ${cause && cause.message ? cause.message : cause}`);
    this.name = 'NetworkError';
    this.cause = cause;
    this.url = url;
  }
}

/** A send the queue may try again: no answer, or the server was unavailable or busy. */
function retryable(err) {
  return err instanceof NetworkError || (err instanceof ChatApiError && (err.status >= 500 || err.status === 429 || err.status === 408));
}

export class RealtimeChat {
  /**
   * @param {object} o
   *   wsHost, wsPort, wssPort, reverbKey, forceTLS, authToken, userId, apiBaseUrl (default
   *   http(s)://wsHost:wsPort/api), userName, authEndpoint, namespace ('App\\Events'), storage
   *   (localStorage-like, sync or async; null = memory), queueKey, typingThrottleMs (2000),
   *   typingTimeoutMs (6000), presence (true: join presence-matter.{id} with each matter),
   *   Pusher, Echo (the classes), fetch, pusherOptions (more Echo/pusher-js options),
   *   autoConnect (true).
   */
  constructor(o = {}) {
    if (!o.reverbKey) throw new TypeError('RealtimeChat: reverbKey (the app key) is required');
    if (!o.authToken) throw new TypeError('RealtimeChat: authToken is required');
    if (o.userId === undefined || o.userId === null || o.userId === '') throw new TypeError('RealtimeChat: userId is required');
    if (!o.wsHost) throw new TypeError('RealtimeChat: wsHost is required');
    this.options = o;
    this.userId = Number(o.userId);
    this.userName = o.userName || null;
    this.authToken = o.authToken;
    const tls = Boolean(o.forceTLS);
    const port = Number(o.wsPort || (tls ? 443 : 80));
    this.apiBaseUrl = String(o.apiBaseUrl || `${tls ? 'https' : 'http'}://${o.wsHost}:${o.wssPort && tls ? o.wssPort : port}/api`).replace(/\/+$/, '');
    this.namespace = o.namespace === undefined ? DEFAULT_NAMESPACE : o.namespace;
    this.typingThrottleMs = o.typingThrottleMs ?? 2000;
    this.typingTimeoutMs = o.typingTimeoutMs ?? 6000;
    this.presenceEnabled = o.presence !== false;
    this._fetch = o.fetch || ((...a) => globalThis.fetch(...a));
    this._storage = o.storage === undefined ? defaultStorage() : o.storage;
    this._queueKey = o.queueKey || `parley-chat-queue:${this.userId}`;

    this._handlers = new Map(); // event -> Set(fn)
    this._matters = new Map(); // matterId -> {channel, presence, members, cursor, typingSentAt, typers}
    this._seen = new Set(); // message ids emitted (received or sent)
    this._seenOrder = [];
    this._queue = []; // [{client_message_id, message, client_matter_id, queued_at, attempts}]
    this._queueLoaded = null;
    this._waiters = new Map(); // client_message_id -> {resolve, reject}
    this._flushing = false;
    this._retryTimer = null;
    this._retryDelay = RETRY_MIN_MS;
    this._everConnected = false;
    this._state = 'initialized';
    this._userChannel = null;
    this._closed = false;

    const Echo = o.Echo || EchoDefault;
    const Pusher = o.Pusher || PusherDefault;
    this.echo = new Echo({
      broadcaster: 'reverb',
      key: o.reverbKey,
      wsHost: o.wsHost,
      wsPort: port,
      wssPort: Number(o.wssPort || port),
      forceTLS: tls,
      enabledTransports: ['ws', 'wss'],
      disableStats: true,
      namespace: this.namespace === '' ? false : this.namespace,
      Pusher,
      authEndpoint: o.authEndpoint || `${this.apiBaseUrl}/broadcasting/auth`,
      auth: { headers: { Authorization: `Bearer ${this.authToken}`, Accept: 'application/json' } },
      ...(o.pusherOptions || {}),
    });
    this.pusher = this.echo.connector.pusher;
    this._watchConnection();
    this._queueLoaded = this._loadQueue();
  }

  // ------------------------------------------------------------------ events

  /** Registers fn for an event (see EVENTS); returns a function that removes it. */
  on(event, fn) {
    if (!EVENTS.includes(event)) throw new TypeError(`RealtimeChat.on: unknown event ${event} (one of ${EVENTS.join(', ')})`);
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    const set = this._handlers.get(event);
    if (set) set.delete(fn);
  }

  _emit(event, payload) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (err) {
        if (event !== 'onError') this._emit('onError', { type: 'handler', message: `an ${event} handler threw: ${err && err.message}`, error: err });
      }
    }
  }

  // ------------------------------------------------------------------ connection

  /** 'initialized' | 'connecting' | 'connected' | 'unavailable' | 'failed' | 'disconnected'. */
  get connectionState() {
    return this._state;
  }

  get isConnected() {
    return this._state === 'connected';
  }

  socketId() {
    return this.pusher.connection.socket_id || null;
  }

  _setState(current) {
    const previous = this._state;
    if (previous === current) return;
    this._state = current;
    this._emit('onConnectionStateChange', { previous, current });
    if (current === 'connected') {
      const reconnected = this._everConnected;
      this._everConnected = true;
      this._emit('onConnected', { socketId: this.socketId(), reconnected });
      this._scheduleFlush(0);
    } else if (previous === 'connected') {
      // While away nobody is known to be online or typing; presence's here() refills the
      // members when the channels are joined again after the reconnect.
      for (const m of this._matters.values()) {
        for (const userId of [...m.typers.keys()]) this._stopTyper(m.id, userId);
        if (m.members.size) {
          m.members.clear();
          this._emitPresence(m.id);
        }
      }
      this._emit('onDisconnected', { state: current });
    }
  }

  _watchConnection() {
    const conn = this.pusher.connection;
    this._state = conn.state;
    conn.bind('state_change', ({ current }) => {
      // pusher-js goes to 'disconnected' after a refusal (4001 unknown app key,
      // 4009 origin not allowed …); say 'failed' so apps can tell it from a logout.
      if (current === 'disconnected' && this._refused) current = 'failed';
      this._setState(current);
    });
    conn.bind('error', (err) => {
      const code = err && err.data && err.data.code;
      const wsCode = err && err.error && err.error.data && err.error.data.code;
      const c = code ?? wsCode;
      if (c === 4001) {
        this._refused = true;
        this._emit('onError', { type: 'app_key', code: 4001, message: `The app key "${this.options.reverbKey}" is not known to the server at ${this.options.wsHost}:${this.options.wsPort || ''} (closed with 4001). Check the key parley serve printed (PARLEY_APP_KEY).` });
      } else if (c === 4009) {
        this._refused = true;
        this._emit('onError', { type: 'unauthorized', code: 4009, message: 'The server refused this connection (4009): the page\'s origin is not in the app\'s allowed_origins, or the connection was terminated.' });
      } else if (c === 4007) {
        this._refused = true;
        this._emit('onError', { type: 'protocol', code: 4007, message: 'The server refused the protocol version (4007).' });
      } else if (c !== undefined && c !== null && c >= 4000 && c < 4100) {
        this._refused = true;
        this._emit('onError', { type: 'refused', code: c, message: (err.data && err.data.message) || `connection refused (${c})` });
      } else if (c !== undefined && c !== null) {
        this._emit('onError', { type: 'socket', code: c, message: (err.data && err.data.message) || `socket error ${c}` });
      }
    });
    conn.bind('unavailable', () => {
      this._emit('onError', { type: 'unavailable', message: `The WebSocket server at ${this.options.wsHost}:${this.options.wsPort || ''} cannot be reached; retrying.` });
    });
    if (this.options.autoConnect === false) this.pusher.disconnect();
  }

  /** Reconnects now (e.g. when the browser says it is online again). */
  reconnect() {
    this._refused = false;
    this._closed = false;
    this.pusher.connect();
  }

  /** Closes the socket; the queue is kept (persisted) for the next instance. */
  disconnect() {
    this._closed = true;
    clearTimeout(this._retryTimer);
    for (const m of this._matters.values()) for (const t of m.typers.values()) clearTimeout(t);
    this.echo.disconnect();
  }

  // ------------------------------------------------------------------ REST

  /** One chat API call; resolves the JSON answer, rejects ChatApiError / NetworkError. */
  async request(method, path, body) {
    const headers = { Accept: 'application/json', Authorization: `Bearer ${this.authToken}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const sid = this.socketId();
    if (sid) headers['X-Socket-ID'] = sid; // Laravel's toOthers(): our own socket is left out
    const url = this.apiBaseUrl + path;
    let res;
    try {
      res = await this._fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      throw new NetworkError(err, url);
    }
    let text;
    try {
      text = await res.text();
    } catch (err) {
      throw new NetworkError(err, url); // the answer was cut off
    }
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { message: text.slice(0, 200) };
    }
    if (!res.ok) throw new ChatApiError(res.status, data, method, path);
    return data;
  }

  async me() {
    const u = await this.request('GET', '/user');
    if (u && u.name) this.userName = u.name;
    return u;
  }

  /** GET /matters: [{id, title, unread_count, last_message, members, …}]. */
  async getMatters() {
    return (await this.request('GET', '/matters')).data;
  }

  /** GET /messages/unread-count: {user_id, unread_count, matters}. */
  async getUnreadCount() {
    return this.request('GET', '/messages/unread-count');
  }

  /**
   * GET /messages (the paginator answer). Options: page, limit, afterId (oldest first),
   * beforeId (newest first). Every message fetched counts as seen (never emitted again), and
   * without beforeId it advances the matter's catch-up cursor.
   */
  async getMessages(matterId, { page, limit, afterId, beforeId } = {}) {
    const q = new URLSearchParams({ client_matter_id: String(matterId) });
    if (page) q.set('page', String(page));
    if (limit) q.set('limit', String(limit));
    if (afterId) q.set('after_id', String(afterId));
    if (beforeId) q.set('before_id', String(beforeId));
    const res = await this.request('GET', `/messages?${q}`);
    for (const m of res.data) this._markSeen(m.id);
    // A newest-first page 1 or an after_id page is complete up to its highest id.
    if (!beforeId && (afterId || !page || page === 1)) this._advanceCursor(Number(matterId), res.data);
    return res;
  }

  /** The newest `limit` messages, oldest first (what a conversation view shows first). */
  async loadHistory(matterId, { limit = 50 } = {}) {
    const res = await this.getMessages(matterId, { limit });
    return res.data.slice().reverse();
  }

  /** `limit` messages older than beforeId, oldest first (infinite scroll up); [] at the start. */
  async loadOlder(matterId, beforeId, { limit = 50 } = {}) {
    const res = await this.getMessages(matterId, { beforeId, limit });
    return res.data.slice().reverse();
  }

  /** PUT /messages/{id}/read: one read receipt. */
  async markAsRead(messageId) {
    return (await this.request('PUT', `/messages/${encodeURIComponent(messageId)}/read`)).data;
  }

  /** PUT /matters/{id}/read {up_to_id}: everything up to a message, one request. */
  async markMatterRead(matterId, upToId) {
    return (await this.request('PUT', `/matters/${encodeURIComponent(matterId)}/read`, { up_to_id: Number(upToId) })).data;
  }

  /** PUT /messages/{id} {message}: edit your message. */
  async editMessage(messageId, message) {
    const m = (await this.request('PUT', `/messages/${encodeURIComponent(messageId)}`, { message })).data;
    this._updated(m);
    return m;
  }

  /** DELETE /messages/{id}: delete your message (soft: deleted_at set, text removed). */
  async deleteMessage(messageId) {
    const res = await this.request('DELETE', `/messages/${encodeURIComponent(messageId)}`);
    const m = res && (res.data || res.message);
    this._deleted(m);
    return m;
  }

  // ------------------------------------------------------------------ channels

  // The user and the matter channel both carry a matter's events: each is emitted once.
  _once(key) {
    this._eventKeys = this._eventKeys || new Set();
    if (this._eventKeys.has(key)) return false;
    this._eventKeys.add(key);
    if (this._eventKeys.size > 20000) this._eventKeys = new Set([...this._eventKeys].slice(5000));
    return true;
  }

  _updated(message) {
    if (message && this._once(`u:${message.id}:${message.updated_at || message.edited_at}`)) this._emit('onMessageUpdated', { message });
  }

  _deleted(message) {
    if (message && this._once(`d:${message.id}`)) this._emit('onMessageDeleted', { message });
  }

  _listenAll(channel, matterId) {
    channel
      .listen('MessageSent', (e) => this._incoming(e.message, 'live'))
      .listen('MessageUpdated', (e) => this._updated(e.message))
      .listen('MessageDeleted', (e) => this._deleted(e.message))
      .listen('MessageReceived', (e) => {
        if (this._once(`r:${e.message_id}:${e.reader_id}`)) this._emit('onMessageRead', e);
      })
      .listen('MessagesRead', (e) => {
        if (this._once(`rr:${e.client_matter_id}:${e.reader_id}:${e.up_to_id}:${e.read_at}`)) this._emit('onMessagesRead', e);
      })
      .error((e) => this._emit('onError', {
        type: 'subscription',
        status: e && e.status,
        message: `subscription to ${matterId ? `matter ${matterId}` : 'your user channel'} refused: ${(e && (e.error || e.status)) || 'unknown'}`,
      }));
    return channel;
  }

  /** Subscribes private-user.{userId}: messages, receipts and unread counts of every matter. */
  subscribeToUserChannel() {
    if (this._userChannel) return this._userChannel;
    let first = true;
    this._userChannel = this._listenAll(this.echo.private(`user.${this.userId}`), null)
      .listen('UnreadCountUpdated', (e) => this._emit('onUnreadCountUpdated', e))
      .subscribed(() => {
        // Back after an outage: counts may have changed meanwhile.
        if (!first) this._refreshUnread();
        first = false;
      });
    return this._userChannel;
  }

  /**
   * Subscribes private-matter.{id} (messages, receipts, typing) and, unless presence is off,
   * joins presence-matter.{id} (who is online). lastMessageId (optional) starts the catch-up
   * cursor when no history was loaded through this instance.
   */
  subscribeToMatterChannel(matterId, { lastMessageId, presence = this.presenceEnabled } = {}) {
    const id = Number(matterId);
    let m = this._matters.get(id);
    if (m) return m.channel;
    m = { id, channel: null, presence: null, members: new Map(), cursor: Number(lastMessageId) || 0, typingSentAt: 0, typers: new Map() };
    this._matters.set(id, m);
    if (!this.userName) this.me().catch(() => {}); // the name typing whispers carry
    m.channel = this._listenAll(this.echo.private(`matter.${id}`), id)
      .listenForWhisper('typing', (e) => this._typingReceived(id, e))
      // Each (re)subscription: fetch what was sent while the channel was not delivering to us.
      // It runs once the channel is subscribed again, so nothing falls between catch-up and live.
      .subscribed(() => this._catchUpQuietly(id));
    if (presence) {
      m.presence = this.echo.join(`matter.${id}`)
        .here((users) => {
          m.members = new Map(users.map((u) => [String(u.id), u]));
          this._emitPresence(id);
        })
        .joining((u) => {
          m.members.set(String(u.id), u);
          this._emit('onMemberJoined', { matterId: id, member: u });
          this._emitPresence(id);
        })
        .leaving((u) => {
          m.members.delete(String(u.id));
          this._emit('onMemberLeft', { matterId: id, member: u });
          this._stopTyper(id, Number(u.id));
          this._emitPresence(id);
        })
        .error((e) => this._emit('onError', { type: 'subscription', status: e && e.status, message: `presence for matter ${id} refused: ${(e && (e.error || e.status)) || 'unknown'}` }));
    }
    return m.channel;
  }

  unsubscribeFromMatterChannel(matterId) {
    const id = Number(matterId);
    const m = this._matters.get(id);
    if (!m) return;
    for (const t of m.typers.values()) clearTimeout(t);
    this.echo.leave(`matter.${id}`); // leaves private-, presence- and the public name
    this._matters.delete(id);
  }

  /** Who is online in a matter now: [{id, name}] (needs presence). */
  onlineMembers(matterId) {
    const m = this._matters.get(Number(matterId));
    return m ? [...m.members.values()] : [];
  }

  _emitPresence(matterId) {
    this._emit('onPresenceChanged', { matterId, members: this.onlineMembers(matterId) });
  }

  // ------------------------------------------------------------------ messages in

  _markSeen(id) {
    id = Number(id);
    if (this._seen.has(id)) return false;
    this._seen.add(id);
    this._seenOrder.push(id);
    if (this._seenOrder.length > 20000) {
      for (const old of this._seenOrder.splice(0, 5000)) this._seen.delete(old);
    }
    return true;
  }

  _advanceCursor(matterId, messages) {
    const m = this._matters.get(matterId);
    if (!m) {
      // Not subscribed yet: remember it for when it is.
      this._pendingCursors = this._pendingCursors || new Map();
      const top = Math.max(this._pendingCursors.get(matterId) || 0, ...messages.map((x) => Number(x.id)));
      if (top > 0) this._pendingCursors.set(matterId, top);
      return;
    }
    for (const x of messages) if (Number(x.id) > m.cursor) m.cursor = Number(x.id);
  }

  _incoming(message, source) {
    if (!message || message.id === undefined) return;
    if (!this._markSeen(message.id)) return; // already emitted (both channels, or fetched)
    const matterId = Number(message.client_matter_id);
    this._stopTyper(matterId, Number(message.sender_id));
    this._emit('onMessageReceived', { message, matterId, source });
    if (source === 'live' && Number(message.sender_id) !== this.userId) {
      this._emit('onNotification', { message, matterId });
    }
  }

  async _catchUpQuietly(matterId) {
    const m = this._matters.get(matterId);
    if (!m) return;
    if (this._pendingCursors && this._pendingCursors.has(m.id)) {
      m.cursor = Math.max(m.cursor, this._pendingCursors.get(m.id));
      this._pendingCursors.delete(m.id);
    }
    if (!m.cursor) return; // no history loaded through this instance: the app fetches it itself
    // One catch-up at a time per matter, in order.
    m.catchingUp = (m.catchingUp || Promise.resolve()).then(() => this.catchUp(m.id)).catch((err) => {
      this._emit('onError', { type: 'catchup', message: `catch-up of matter ${m.id} failed: ${err.message}`, status: err.status });
    });
    await m.catchingUp;
  }

  async _refreshUnread() {
    try {
      this._emit('onUnreadCountUpdated', await this.getUnreadCount());
    } catch (err) {
      this._emit('onError', { type: 'catchup', message: `unread counts after reconnect: ${err.message}`, status: err.status });
    }
  }

  /**
   * Fetches every message of a matter after its cursor (the last id the REST API confirmed),
   * 100 at a time, emitting those not yet seen as onMessageReceived {source: 'catchup'}.
   */
  async catchUp(matterId) {
    const m = this._matters.get(Number(matterId));
    if (!m) throw new Error(`catchUp: not subscribed to matter ${matterId}`);
    const fetched = [];
    for (let guard = 0; guard < 1000; guard++) {
      const q = new URLSearchParams({ client_matter_id: String(m.id), after_id: String(m.cursor), limit: '100' });
      const res = await this.request('GET', `/messages?${q}`);
      if (!res.data.length) break;
      for (const msg of res.data) {
        if (Number(msg.id) > m.cursor) m.cursor = Number(msg.id);
        this._incoming(msg, 'catchup'); // skipped when already seen (live, sent, or fetched)
        fetched.push(msg);
      }
      if (res.data.length < 100) break;
    }
    this._emit('onCatchUp', { matterId: m.id, messages: fetched });
    return fetched;
  }

  // ------------------------------------------------------------------ typing

  /** Tells the matter's other members you are typing (a client-typing whisper, throttled). */
  typing(matterId) {
    const m = this._matters.get(Number(matterId));
    if (!m || this._state !== 'connected') return false;
    const now = Date.now();
    if (now - m.typingSentAt < this.typingThrottleMs) return false;
    m.typingSentAt = now;
    m.channel.whisper('typing', { user_id: this.userId, name: this.userName, typing: true });
    return true;
  }

  /** Says you stopped typing (after a send or when the input is cleared). */
  stopTyping(matterId) {
    const m = this._matters.get(Number(matterId));
    if (!m || this._state !== 'connected' || !m.typingSentAt) return false;
    m.typingSentAt = 0;
    m.channel.whisper('typing', { user_id: this.userId, name: this.userName, typing: false });
    return true;
  }

  _typingReceived(matterId, e) {
    if (!e) return;
    const userId = Number(e.user_id);
    if (!userId || userId === this.userId) return;
    const m = this._matters.get(matterId);
    if (!m) return;
    clearTimeout(m.typers.get(userId));
    if (e.typing === false) {
      this._stopTyper(matterId, userId);
      return;
    }
    const fresh = !m.typers.has(userId);
    m.typers.set(userId, setTimeout(() => this._stopTyper(matterId, userId), this.typingTimeoutMs));
    if (fresh) this._emit('onTyping', { matterId, userId, name: e.name || (m.members.get(String(userId)) || {}).name || null, typing: true });
  }

  _stopTyper(matterId, userId) {
    const m = this._matters.get(matterId);
    if (!m || !m.typers.has(userId)) return;
    clearTimeout(m.typers.get(userId));
    m.typers.delete(userId);
    this._emit('onTyping', { matterId, userId, name: (m.members.get(String(userId)) || {}).name || null, typing: false });
  }

  /** Ids of the users typing in a matter now. */
  typingUsers(matterId) {
    const m = this._matters.get(Number(matterId));
    return m ? [...m.typers.keys()] : [];
  }

  // ------------------------------------------------------------------ sending (the queue)

  /** The sends not yet stored by the server, in order. */
  get pendingMessages() {
    return this._queue.map((q) => ({ ...q }));
  }

  async _loadQueue() {
    if (!this._storage) return;
    try {
      await this._readQueue();
    } finally {
      this._queueReady = true;
    }
  }

  async _readQueue() {
    try {
      const raw = await this._storage.getItem(this._queueKey);
      const saved = raw ? JSON.parse(raw) : [];
      if (Array.isArray(saved) && saved.length) {
        // Items queued before this instance go first, in their order.
        const known = new Set(this._queue.map((q) => q.client_message_id));
        this._queue = saved.filter((q) => q && q.client_message_id && !known.has(q.client_message_id)).concat(this._queue);
        this._emit('onQueueChanged', { queue: this.pendingMessages });
        this._scheduleFlush(0);
      }
    } catch (err) {
      this._emit('onError', { type: 'storage', message: `could not read the offline queue: ${err.message}` });
    }
  }

  async _saveQueue() {
    if (!this._storage) return;
    // Never write before the saved queue was read (an async storage); once it was, write at
    // once, so a page closed right after a send still has the send in localStorage.
    if (!this._queueReady) await this._queueLoaded;
    try {
      if (this._queue.length) await this._storage.setItem(this._queueKey, JSON.stringify(this._queue));
      else await this._storage.removeItem(this._queueKey);
    } catch (err) {
      this._emit('onError', { type: 'storage', message: `could not save the offline queue: ${err.message}` });
    }
  }

  /**
   * Sends a message: {message, client_matter_id[, client_message_id]}. Every send goes
   * through the queue (sent in order, one at a time), so the returned promise resolves with
   * the stored message once the server has it — at once when online, after reconnecting when
   * not. It rejects only when the server refuses the message (ChatApiError 4xx).
   */
  sendMessage({ message, client_matter_id: matterId, client_message_id: cid } = {}) {
    if (typeof message !== 'string' || !message.trim()) return Promise.reject(new TypeError('sendMessage: message must be a non-empty string'));
    if (!Number(matterId)) return Promise.reject(new TypeError('sendMessage: client_matter_id is required'));
    const item = {
      client_message_id: cid || newClientMessageId(),
      message,
      client_matter_id: Number(matterId),
      sender_id: this.userId,
      queued_at: new Date().toISOString(),
      attempts: 0,
    };
    const p = new Promise((resolve, reject) => this._waiters.set(item.client_message_id, { resolve, reject }));
    p.catch(() => {}); // a caller that does not await gets onMessageFailed, not an unhandled rejection
    this._queue.push(item);
    this._saveQueue();
    this._emit('onQueueChanged', { queue: this.pendingMessages });
    if (this._state !== 'connected') this._emit('onMessageQueued', { item: { ...item }, queue: this.pendingMessages });
    this._scheduleFlush(0);
    return p;
  }

  _scheduleFlush(ms) {
    if (this._closed) return;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this.flushQueue(), ms);
    if (ms > 0 && this._retryTimer && typeof this._retryTimer.unref === 'function') this._retryTimer.unref();
  }

  /** Sends what is queued, in order; stops at the first failure that a retry may cure. */
  async flushQueue() {
    await this._queueLoaded;
    if (this._flushing || this._closed) return;
    if (this._state !== 'connected') return; // the next 'connected' flushes
    this._flushing = true;
    try {
      while (this._queue.length && this._state === 'connected') {
        const item = this._queue[0];
        item.attempts += 1;
        let stored;
        try {
          stored = (await this.request('POST', '/messages/send', {
            message: item.message, client_matter_id: item.client_matter_id, client_message_id: item.client_message_id,
          })).data;
        } catch (err) {
          if (retryable(err)) {
            if (item.attempts === 1) this._emit('onMessageQueued', { item: { ...item }, queue: this.pendingMessages });
            this._saveQueue();
            this._scheduleFlush(this._retryDelay);
            this._retryDelay = Math.min(this._retryDelay * 2, RETRY_MAX_MS);
            return;
          }
          if (err instanceof ChatApiError && err.status === 401) {
            // The token was refused: keep the queue (a new token may come) and wait for the
            // next reconnect or flushQueue().
            item.attempts -= 1;
            this._emit('onError', { type: 'send', status: 401, message: 'queued messages not sent: the server refused the token (401)' });
            return;
          }
          this._queue.shift();
          this._saveQueue();
          this._emit('onQueueChanged', { queue: this.pendingMessages });
          this._emit('onMessageFailed', { item: { ...item }, status: err.status, error: err });
          this._emit('onError', { type: 'send', status: err.status, message: `message not sent: ${err.message}` });
          this._settle(item.client_message_id, null, err);
          continue;
        }
        this._retryDelay = RETRY_MIN_MS;
        this._queue.shift();
        this._saveQueue();
        // Seen, so it is never emitted as received; it does not move the catch-up cursor:
        // others' messages committed just before it may not have reached us yet.
        this._markSeen(stored.id);
        this._emit('onQueueChanged', { queue: this.pendingMessages });
        this._emit('onMessageSent', { message: stored, client_message_id: item.client_message_id, queued: item.attempts > 1 || undefined });
        this._settle(item.client_message_id, stored, null);
      }
    } finally {
      this._flushing = false;
    }
  }

  _settle(cid, value, err) {
    const w = this._waiters.get(cid);
    if (!w) return;
    this._waiters.delete(cid);
    if (err) w.reject(err);
    else w.resolve(value);
  }

  /** Drops a queued send (e.g. the user cancelled it); true if it was still queued. */
  cancelQueued(clientMessageId) {
    const i = this._queue.findIndex((q) => q.client_message_id === clientMessageId);
    if (i < 0 || (i === 0 && this._flushing)) return false;
    const [item] = this._queue.splice(i, 1);
    this._saveQueue();
    this._emit('onQueueChanged', { queue: this.pendingMessages });
    this._settle(item.client_message_id, null, Object.assign(new Error('cancelled'), { cancelled: true }));
    return true;
  }
}

export default RealtimeChat;
