// RealtimeChat: the chat SDK for Parley, on laravel-echo + pusher-js.
//
// One instance per logged-in user. It connects one WebSocket (Echo with the
// 'reverb' broadcaster), authorizes private and presence channels through
// POST {apiBaseUrl}/broadcasting/auth with the user's bearer token, and talks
// to the chat REST API under apiBaseUrl. On top of what Echo gives it adds:
//
//   - delivery: every message of a followed matter (subscribeToMatterChannel,
//     or any matter of the user with subscribeToUserChannel) is emitted once
//     and in id order. Each followed matter has a position from the moment it
//     is followed: the last message emitted (or known as history) with nothing
//     missing before it. A live MessageSent carries previous_id, the message
//     before it in its matter: when that is the position the message is
//     emitted; when it is higher, something is missing and the SDK fetches
//     GET /messages?client_matter_id=&after_id={position} first. The same
//     catch-up runs after every (re)subscription, so nothing sent while the
//     socket was down, or while the server restarted, is missed. Own sends are
//     emitted as onMessageSent, once — also one a catch-up brings before the
//     answer to its POST (then in its place in id order);
//   - read marks cover only what was shown: markMatterRead never marks past
//     the position, markAsRead refuses a message the SDK has not shown;
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
  'onMessageSent', // {message, client_message_id, queued} — the server stored one of your sends (once per send)
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
  'onCatchUp', // {matterId, messages} — what one catch-up fetched (those not shown before were emitted one by one)
  'onError', // {type, message, code?, status?}
]);

const RETRY_MIN_MS = 500;
// The client event an app sends on its user channel when it goes to the background or comes
// back (Echo's whisper adds the client- prefix): see docs/push.md.
const APP_STATE_EVENT = 'parley-app-state';
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

// base64UrlBytes decodes a VAPID key (base64url, no padding) for pushManager.subscribe.
function base64UrlBytes(s) {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4);
  const bin = atob(b64);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function sameBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
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

/**
 * A read mark for a message this instance has not shown: not emitted by onMessageReceived,
 * not returned by a history call, not sent by this instance. Nothing was sent to the server.
 */
export class NotShownError extends Error {
  constructor(messageId) {
    super(`message ${messageId} has not been shown through this SDK (not emitted, not loaded, not sent by it): not marked read`);
    this.name = 'NotShownError';
    this.messageId = messageId;
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
    this._matters = new Map(); // matterId -> {channel, presence, members, typingSentAt, typers}
    this._chains = new Map(); // matterId -> the matter's delivery state (see _chain)
    this._seen = new Set(); // message ids emitted, loaded or sent (never emitted again)
    this._seenOrder = [];
    this._shown = new Map(); // message id -> matter id: what the app was given (markAsRead's test)
    this._userSync = null; // the user channel's list of matters in flight (GET /matters)
    this._userBaseKnown = false;
    this._userRetry = null;
    this._queue = []; // [{client_message_id, message, client_matter_id, queued_at, attempts}]
    this._queueLoaded = null;
    this._waiters = new Map(); // client_message_id -> {resolve, reject}
    this._flushing = false;
    this._inFlight = null; // the queued send whose POST is on its way
    this._sentEarly = new Map(); // client_message_id -> message: onMessageSent emitted before the POST's answer
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
    for (const c of this._chains.values()) clearTimeout(c.retryTimer);
    clearTimeout(this._userRetry);
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
   * beforeId (newest first). Every message fetched counts as shown: it is never emitted
   * afterwards and may be marked read. The newest page (no page or page 1, no cursor) and an
   * afterId page move the matter's position when they join it (nothing missing between).
   */
  async getMessages(matterId, { page, limit, afterId, beforeId } = {}) {
    const q = new URLSearchParams({ client_matter_id: String(matterId) });
    if (page) q.set('page', String(page));
    if (limit) q.set('limit', String(limit));
    if (afterId) q.set('after_id', String(afterId));
    if (beforeId) q.set('before_id', String(beforeId));
    const res = await this.request('GET', `/messages?${q}`);
    for (const m of res.data) {
      this._markSeen(m.id);
      this._markShown(m);
    }
    const c = this._chain(matterId);
    const size = Number(res.per_page) || Number(limit) || 20;
    if (!beforeId && !afterId && (!page || Number(page) === 1)) this._newestRead(c, res.data, res.total <= res.data.length || res.data.length < size);
    else if (afterId && !beforeId) this._afterRead(c, Number(afterId), res.data, res.data.length < size);
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

  /**
   * PUT /messages/{id}/read: one read receipt, for a message this instance has shown (emitted
   * by onMessageReceived, returned by a history call, or sent by it). Any other id rejects with
   * NotShownError and nothing is sent: call it again once the message was emitted.
   */
  async markAsRead(messageId) {
    const id = Number(messageId);
    if (!this._shown.has(id)) throw new NotShownError(id);
    return (await this.request('PUT', `/messages/${encodeURIComponent(id)}/read`)).data;
  }

  /**
   * PUT /matters/{id}/read {up_to_id}: everything up to a message, one request — but never past
   * shownUpTo(matterId), the last message shown with nothing missing before it: a higher upToId
   * is lowered to it, and the answer then has clamped: true and requested_up_to_id. With nothing
   * shown (up_to_id 0) no request is made and the answer says count 0.
   */
  async markMatterRead(matterId, upToId) {
    const id = Number(matterId);
    const want = Number(upToId);
    const c = this._chains.get(id);
    if (c && c.position === null && c.baseLoading) await c.baseLoading.catch(() => {});
    const limit = c && c.position !== null ? c.position : 0;
    const upTo = Math.min(want, limit);
    if (!(upTo >= 1)) {
      return { client_matter_id: id, reader_id: this.userId, up_to_id: 0, read_at: null, count: 0, clamped: true, requested_up_to_id: want };
    }
    const res = (await this.request('PUT', `/matters/${encodeURIComponent(id)}/read`, { up_to_id: upTo })).data;
    return upTo < want ? { ...res, clamped: true, requested_up_to_id: want } : res;
  }

  /**
   * The matter's position: the newest message id up to which everything was shown (emitted,
   * loaded through a history call, sent by this instance, or already there when the matter was
   * first followed); what markMatterRead may mark. null while unknown (not followed, or its
   * position not fetched yet).
   */
  shownUpTo(matterId) {
    const c = this._chains.get(Number(matterId));
    return c ? c.position : null;
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

  // ------------------------------------------------------------------ push notifications

  /**
   * POST /devices: registers this device for push notifications while the app is closed:
   * {platform: 'fcm' | 'apns', token} (the token Firebase or APNs gave the app), or
   * {platform: 'webpush', subscription} (a PushSubscription or its toJSON()). Idempotent; a
   * token another user registered moves to this one. Resolves the device ({id, platform, ...});
   * unregisterDevice() without an id removes it (at logout).
   */
  async registerDevice(device) {
    const body = { ...device };
    if (body.subscription && typeof body.subscription.toJSON === 'function') body.subscription = body.subscription.toJSON();
    const d = (await this.request('POST', '/devices', body)).data;
    this._deviceId = d.id;
    return d;
  }

  /** DELETE /devices/{id}: no more pushes to it (default: the device registerDevice registered). */
  async unregisterDevice(id = this._deviceId) {
    if (id === undefined || id === null) return false;
    await this.request('DELETE', `/devices/${encodeURIComponent(id)}`);
    if (id === this._deviceId) this._deviceId = null;
    return true;
  }

  /** GET /devices: this user's devices. */
  async listDevices() {
    return (await this.request('GET', '/devices')).data;
  }

  /** PUT /matters/{id}/settings {muted}: a muted matter sends you no push notifications. */
  async setMatterMuted(matterId, muted) {
    return (await this.request('PUT', `/matters/${encodeURIComponent(matterId)}/settings`, { muted: Boolean(muted) })).data;
  }

  /**
   * Browsers: subscribes the service worker registration to Web Push with the server's VAPID
   * key (GET /push/vapid-public-key) and registers the subscription. Ask for the notification
   * permission first (Notification.requestPermission()); a subscription made with another key
   * is replaced.
   */
  async enableWebPush(registration) {
    const { public_key: key } = await this.request('GET', '/push/vapid-public-key');
    const appKey = base64UrlBytes(key);
    let sub = await registration.pushManager.getSubscription();
    const had = sub && sub.options && sub.options.applicationServerKey;
    if (sub && had && !sameBytes(new Uint8Array(had), appKey)) {
      await sub.unsubscribe();
      sub = null;
    }
    if (!sub) sub = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: appKey });
    return this.registerDevice({ platform: 'webpush', subscription: sub });
  }

  /**
   * Tells the server whether the app is in the foreground ('foreground') or the background
   * ('background'), with the client event client-parley-app-state on your user channel: a user
   * whose every socket is in the background gets push notifications. Sent again after every
   * reconnect (a new socket starts in the foreground). Needs subscribeToUserChannel().
   */
  setAppState(state) {
    if (state !== 'background' && state !== 'foreground') throw new TypeError("setAppState: 'background' or 'foreground'");
    this._appState = state;
    return this._sendAppState();
  }

  get appState() {
    return this._appState || 'foreground';
  }

  _sendAppState() {
    const ch = this._userChannel && this.pusher.channel(`private-user.${this.userId}`);
    if (!ch || !ch.subscribed || this._state !== 'connected') return false;
    this._userChannel.whisper(APP_STATE_EVENT, { state: this.appState });
    return true;
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
      .listen('MessageSent', (e) => this._live(e && e.message))
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

  /**
   * Subscribes private-user.{userId}: messages, receipts and unread counts of every matter.
   * Every matter of the user is followed from now on: its position is its newest message in
   * GET /matters (read now), and after every (re)subscription the matters whose newest message
   * is past their position are caught up.
   */
  subscribeToUserChannel() {
    if (this._userChannel) return this._userChannel;
    let first = true;
    this._userSync = this._syncUserMatters();
    this._userSync.catch((err) => this._emit('onError', { type: 'catchup', message: `your matters could not be listed: ${err.message}`, status: err.status }));
    this._userChannel = this._listenAll(this.echo.private(`user.${this.userId}`), null)
      .listen('UnreadCountUpdated', (e) => this._emit('onUnreadCountUpdated', e))
      .subscribed(() => {
        // A new socket starts in the foreground: say so again if the app is not.
        if (this.appState === 'background') this._sendAppState();
        // The list read when subscribing may predate the subscription: read it again now that
        // the channel delivers, and catch up what changed meanwhile (or while away).
        this._resyncUser();
        // Back after an outage: counts may have changed meanwhile.
        if (!first) this._refreshUnread();
        first = false;
      });
    return this._userChannel;
  }

  /**
   * Subscribes private-matter.{id} (messages, receipts, typing) and, unless presence is off,
   * joins presence-matter.{id} (who is online). The matter is followed from now on: its
   * position is its newest message, fetched now (GET /messages?limit=1), unless the SDK knows
   * one already (history loaded, the user channel) or lastMessageId gives it: everything after
   * the position is emitted, once, in id order.
   */
  subscribeToMatterChannel(matterId, { lastMessageId, presence = this.presenceEnabled } = {}) {
    const id = Number(matterId);
    let m = this._matters.get(id);
    if (m) return m.channel;
    m = { id, channel: null, presence: null, members: new Map(), typingSentAt: 0, typers: new Map() };
    this._matters.set(id, m);
    const c = this._chain(id);
    c.matterChannel = true;
    if (c.position === null) {
      if (Number(lastMessageId) > 0) this._setBase(c, Number(lastMessageId));
      else {
        this._fetchBase(c).catch((err) => this._failed(c, `the position of matter ${id} could not be fetched`, err));
      }
    }
    if (!this.userName) this.me().catch(() => {}); // the name typing whispers carry
    m.channel = this._listenAll(this.echo.private(`matter.${id}`), id)
      .listenForWhisper('typing', (e) => this._typingReceived(id, e))
      // Each (re)subscription: fetch what came after the position. It runs once the channel
      // delivers again, so a message is either live or fetched, never neither.
      .subscribed(() => this._catchUpQuietly(c));
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
    const c = this._chains.get(id);
    if (c) {
      c.matterChannel = false;
      if (!this._userChannel) {
        // No longer followed: a later subscribe starts from the matter's newest message again.
        clearTimeout(c.retryTimer);
        this._chains.delete(id);
      }
    }
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
  //
  // Each matter has a chain: `position` is the newest id up to which the app was given
  // everything (emitted, loaded through a history call, sent by this instance, or there
  // before the matter was followed); null until known. Live messages and own sends wait in
  // `pending` until the message before them (previous_id) is at the position; a catch-up
  // (GET /messages?after_id={position}, oldest first) fills any hole. Message ids commit in
  // order within a matter, so after_id never skips a late commit.

  _chain(matterId) {
    const id = Number(matterId);
    let c = this._chains.get(id);
    if (!c) {
      c = {
        id,
        position: null,
        pending: new Map(), // id -> {message, own}
        baseLoading: null, // the position's fetch in flight
        matterChannel: false,
        queue: Promise.resolve(), // catch-ups, one at a time
        next: null, // a catch-up queued and not started yet
        retryTimer: null,
        retryMs: 0,
      };
      this._chains.set(id, c);
    }
    return c;
  }

  _followed(c) {
    return this._chains.get(c.id) === c && (c.matterChannel || Boolean(this._userChannel));
  }

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

  _markShown(message) {
    const id = Number(message.id);
    if (this._shown.has(id)) return;
    this._shown.set(id, Number(message.client_matter_id));
    if (this._shown.size > 50000) {
      let n = 10000;
      for (const k of this._shown.keys()) {
        this._shown.delete(k);
        if (--n === 0) break;
      }
    }
  }

  /**
   * Gives a message to the app, once: onMessageReceived, or onMessageSent when it is one of
   * this instance's own sends still in the queue (its POST's answer has not come yet).
   */
  _incoming(message, source) {
    if (!message || message.id === undefined) return;
    if (!this._markSeen(message.id)) return; // already emitted, loaded or sent
    this._markShown(message);
    const own = this._queuedSend(message);
    if (own) {
      this._sentBeforeAnswer(own, message);
      return;
    }
    const matterId = Number(message.client_matter_id);
    this._stopTyper(matterId, Number(message.sender_id));
    this._emit('onMessageReceived', { message, matterId, source });
    if (source === 'live' && Number(message.sender_id) !== this.userId) {
      this._emit('onNotification', { message, matterId });
    }
  }

  /** The queued send (in flight or waiting for a repeat) that `message` is the stored form of, if any. */
  _queuedSend(message) {
    const cid = message.client_message_id;
    if (!cid || Number(message.sender_id) !== this.userId) return null;
    return this._queue.find((q) => q.client_message_id === cid && Number(q.client_matter_id) === Number(message.client_matter_id)) || null;
  }

  /**
   * One of our queued sends reached us (a catch-up fetched it, or it came live) before the answer
   * to its POST: it is emitted now, in its place in id order, as onMessageSent — once. If its
   * POST is on its way, the answer settles sendMessage and emits nothing more; if the send waits
   * for a repeat (an earlier answer was lost), it is stored: it leaves the queue now and
   * sendMessage resolves with this message.
   */
  _sentBeforeAnswer(item, message) {
    const cid = item.client_message_id;
    if (this._sentEarly.has(cid)) return;
    if (item === this._inFlight) {
      this._sentEarly.set(cid, message);
      this._emit('onMessageSent', { message, client_message_id: cid, queued: item.attempts > 1 || undefined });
      return;
    }
    const i = this._queue.indexOf(item);
    if (i >= 0) this._queue.splice(i, 1);
    this._saveQueue();
    this._emit('onQueueChanged', { queue: this.pendingMessages });
    this._emit('onMessageSent', { message, client_message_id: cid, queued: true });
    this._settle(cid, message, null);
  }

  /** A MessageSent from either channel. */
  _live(message) {
    if (!message || message.id === undefined || message.client_matter_id === undefined) return;
    const id = Number(message.id);
    if (message.previous_id === undefined || message.previous_id === null) {
      // A server without previous_id: emitted as it comes, once; catch-ups still run from
      // the position (and skip it).
      this._incoming(message, 'live');
      return;
    }
    const c = this._chain(message.client_matter_id);
    if ((c.position !== null && id <= c.position) || c.pending.has(id)) return; // the other channel's copy
    if (c.position === null && !c.baseLoading && !c.matterChannel && this._userBaseKnown) {
      // A matter the user channel brings that its list did not have (joined since): it is
      // followed from this message on; what it held before is history.
      this._setBase(c, Number(message.previous_id));
    }
    c.pending.set(id, { message, own: false });
    this._drain(c);
  }

  /** One of our own sends was stored: it continues the chain, but is not emitted. */
  _ownSent(message) {
    const c = this._chains.get(Number(message.client_matter_id));
    if (!c || message.previous_id === undefined || message.previous_id === null) return; // a repeat's answer: a catch-up skips it
    const id = Number(message.id);
    if ((c.position !== null && id <= c.position) || c.pending.has(id)) return;
    c.pending.set(id, { message, own: true });
    this._drain(c);
  }

  /** Emits, in id order, the pending messages that follow the position; catches up on a hole. */
  _drain(c) {
    if (c.position === null) return;
    for (;;) {
      let next = null;
      for (const [id, p] of c.pending) {
        if (id <= c.position) c.pending.delete(id);
        else if (Number(p.message.previous_id) <= c.position && (!next || id < next.id)) next = { id, p };
      }
      if (!next) break;
      c.pending.delete(next.id);
      c.position = next.id;
      if (!next.p.own) this._incoming(next.p.message, 'live');
    }
    if (c.pending.size) this._catchUpQuietly(c);
  }

  /**
   * The matter's position becomes known. Live messages that came before that came after the
   * subscription: those at or below it are emitted now, in order (the others follow the chain).
   */
  _setBase(c, newest) {
    if (c.position !== null) return;
    c.position = Number(newest) || 0;
    const early = [...c.pending.entries()].filter(([id]) => id <= c.position).sort((a, b) => a[0] - b[0]);
    for (const [id, p] of early) {
      c.pending.delete(id);
      if (!p.own) this._incoming(p.message, 'live');
    }
    this._drain(c);
  }

  /**
   * A newest-first read of the matter (newest first, `complete` when it holds every message):
   * the position if none is known yet; else it moves the position when it joins it, and a hole
   * between them is caught up.
   */
  _newestRead(c, data, complete) {
    const top = data.length ? Number(data[0].id) : 0;
    if (c.position === null) {
      this._setBase(c, top);
      return;
    }
    if (top <= c.position) return;
    if (complete || Number(data[data.length - 1].id) <= c.position) {
      c.position = top;
      this._drain(c);
    } else if (this._followed(c)) {
      this._catchUpQuietly(c);
    }
  }

  /** An after_id read (oldest first): everything after afterId up to its last message. */
  _afterRead(c, afterId, data, complete) {
    const last = data.length ? Number(data[data.length - 1].id) : afterId;
    if (c.position === null) {
      if (complete) this._setBase(c, last);
      return;
    }
    if (afterId <= c.position && last > c.position) {
      c.position = last;
      this._drain(c);
    }
  }

  /** Fetches the matter's newest message id: its position (0 when empty). */
  _fetchBase(c) {
    if (c.position !== null) return Promise.resolve();
    if (c.baseLoading) return c.baseLoading;
    const p = (async () => {
      // The user channel's list, when one is being read, gives it without another request.
      if (this._userSync && !this._userBaseKnown) await this._userSync.catch(() => {});
      if (c.position !== null) return;
      const res = await this.request('GET', `/messages?${new URLSearchParams({ client_matter_id: String(c.id), page: '1', limit: '1' })}`);
      if (this._chains.get(c.id) !== c) return;
      const newest = res.data.length ? Number(res.data[0].id) : 0;
      // Not shown to the app: it is the position only if none came meanwhile.
      if (c.position === null) this._setBase(c, newest);
      else if (newest > c.position) this._catchUpQuietly(c);
    })();
    c.baseLoading = p;
    const done = () => {
      if (c.baseLoading === p) c.baseLoading = null;
    };
    p.then(done, done);
    return p;
  }

  /** Runs a catch-up of the chain after the one running (at most one waits); resolves what it fetched. */
  _queueCatchUp(c) {
    if (c.next) return c.next;
    const run = c.queue.then(() => {
      c.next = null;
      return this._catchUpChain(c);
    });
    c.next = run;
    c.queue = run.catch(() => {});
    return run;
  }

  _catchUpQuietly(c) {
    if (!this._followed(c) && !c.pending.size) return Promise.resolve([]);
    return this._queueCatchUp(c).then((fetched) => {
      c.retryMs = 0;
      return fetched;
    }, (err) => {
      this._failed(c, `catch-up of matter ${c.id} failed`, err);
      return [];
    });
  }

  /**
   * A fetch of the chain failed: reported and tried again later, unless the server refused it
   * for good (a 4xx other than 408 and 429). 403 and 404 (not a member, no such matter) are
   * left to the channel's refusal (onError type 'subscription').
   */
  _failed(c, what, err) {
    const status = err instanceof ChatApiError ? err.status : 0;
    if (status !== 403 && status !== 404) this._emit('onError', { type: 'catchup', message: `${what}: ${err.message}`, status: err.status });
    if (!retryable(err) && status >= 400 && status < 500) return;
    this._retryLater(c);
  }

  /** After a failed fetch: try again, 1 s doubling to 30 s, while the matter is followed. */
  _retryLater(c) {
    if (this._closed || !this._followed(c)) return;
    clearTimeout(c.retryTimer);
    c.retryMs = Math.min(Math.max(1000, c.retryMs * 2), RETRY_MAX_MS);
    c.retryTimer = setTimeout(() => this._catchUpQuietly(c), c.retryMs); // fetches the position first if needed
    if (c.retryTimer && typeof c.retryTimer.unref === 'function') c.retryTimer.unref();
  }

  async _catchUpChain(c) {
    if (this._chains.get(c.id) !== c) return [];
    if (c.position === null) await this._fetchBase(c);
    if (c.position === null) throw new Error('its position is not known');
    const before = new Set(c.pending.keys());
    const fetched = [];
    const LIMIT = 100;
    const apply = (msgs) => {
      if (this._chains.get(c.id) !== c) return; // unsubscribed meanwhile
      for (const msg of msgs) {
        fetched.push(msg);
        const id = Number(msg.id);
        if (id <= c.position) continue; // emitted live meanwhile
        c.position = id;
        const p = c.pending.get(id);
        c.pending.delete(id);
        if (!p) this._incoming(msg, 'catchup'); // skipped when loaded or sent by us
        else if (!p.own) this._incoming(p.message, 'live'); // it came live, after the hole
      }
    };
    if (c.position === 0) {
      // after_id starts at 1: page back from the newest, then emit oldest first.
      const all = [];
      let beforeId = 0;
      for (let guard = 0; guard < 1000; guard++) {
        const q = new URLSearchParams({ client_matter_id: String(c.id), limit: String(LIMIT) });
        if (beforeId) q.set('before_id', String(beforeId));
        const res = await this.request('GET', `/messages?${q}`);
        all.push(...res.data);
        if (res.data.length < LIMIT) break;
        beforeId = Number(res.data[res.data.length - 1].id);
      }
      apply(all.reverse());
    } else {
      for (let guard = 0; guard < 1000; guard++) {
        const q = new URLSearchParams({ client_matter_id: String(c.id), after_id: String(c.position), limit: String(LIMIT) });
        const res = await this.request('GET', `/messages?${q}`);
        apply(res.data);
        if (res.data.length < LIMIT) break;
      }
    }
    // What waited before this catch-up was committed before it, so it was fetched. Anything
    // still held from then would only be a server's inconsistency: let it go, in order.
    const stuck = [...c.pending.entries()].filter(([id]) => before.has(id) && id > c.position).sort((a, b) => a[0] - b[0]);
    for (const [id, p] of stuck) {
      c.pending.delete(id);
      c.position = id;
      if (!p.own) this._incoming(p.message, 'live');
    }
    this._drain(c);
    this._emit('onCatchUp', { matterId: c.id, messages: fetched });
    return fetched;
  }

  /**
   * GET /matters: every matter of the user is followed. A matter without a position takes
   * its newest message; one whose newest message is past its position is caught up.
   */
  async _syncUserMatters() {
    const list = (await this.request('GET', '/matters')).data || [];
    const listed = new Set();
    const behind = [];
    for (const m of list) {
      const c = this._chain(m.id);
      listed.add(c.id);
      const newest = m.last_message ? Number(m.last_message.id) : 0;
      if (c.position === null) this._setBase(c, newest);
      else if (newest > c.position) behind.push(c);
    }
    this._userBaseKnown = true;
    // Matters whose messages came before the list and that it does not have (joined since):
    // followed from the first of those messages on.
    for (const c of this._chains.values()) {
      if (c.position === null && !c.baseLoading && !listed.has(c.id) && c.pending.size) {
        this._setBase(c, Math.min(...[...c.pending.values()].map((p) => Number(p.message.previous_id))));
      }
    }
    // One matter after the other: after a long outage many may be behind, and every request
    // counts against the token's rate limit.
    for (const c of behind) await this._catchUpQuietly(c);
  }

  _resyncUser() {
    if (!this._userChannel || this._closed) return;
    clearTimeout(this._userRetry);
    const run = (this._userSync || Promise.resolve()).catch(() => {}).then(() => this._syncUserMatters());
    this._userSync = run;
    run.then(() => {
      this._userRetryMs = 0;
    }, (err) => {
      this._emit('onError', { type: 'catchup', message: `your matters could not be checked after subscribing: ${err.message}`, status: err.status });
      if (this._closed) return;
      this._userRetryMs = Math.min(Math.max(1000, (this._userRetryMs || 0) * 2), RETRY_MAX_MS);
      this._userRetry = setTimeout(() => this._resyncUser(), this._userRetryMs);
      if (this._userRetry && typeof this._userRetry.unref === 'function') this._userRetry.unref();
    });
  }

  async _refreshUnread() {
    try {
      this._emit('onUnreadCountUpdated', await this.getUnreadCount());
    } catch (err) {
      this._emit('onError', { type: 'catchup', message: `unread counts after reconnect: ${err.message}`, status: err.status });
    }
  }

  /**
   * Fetches what a followed matter got after its position, 100 at a time (oldest first),
   * emitting what was not shown yet as onMessageReceived {source: 'catchup'}; resolves with
   * every message fetched. The SDK runs it by itself after every (re)subscription and on a hole.
   */
  async catchUp(matterId) {
    const c = this._chains.get(Number(matterId));
    if (!c) throw new Error(`catchUp: not subscribed to matter ${matterId}`);
    return this._queueCatchUp(c);
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
   * not. It rejects only when the server refuses the message (ChatApiError 4xx). onMessageSent is
   * emitted once per send: with the answer, or before it, in id order, when a catch-up or the
   * socket brings the stored message first (a send waiting for a repeat is then done at once).
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
        this._inFlight = item;
        try {
          stored = (await this.request('POST', '/messages/send', {
            message: item.message, client_matter_id: item.client_matter_id, client_message_id: item.client_message_id,
          })).data;
        } catch (err) {
          this._inFlight = null;
          const early = this._sentEarly.get(item.client_message_id);
          if (early) {
            // No answer, but the message was seen stored meanwhile (onMessageSent was emitted
            // then): the send is done, nothing to repeat.
            this._sentEarly.delete(item.client_message_id);
            this._queue.shift();
            this._saveQueue();
            this._emit('onQueueChanged', { queue: this.pendingMessages });
            this._settle(item.client_message_id, early, null);
            continue;
          }
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
        this._inFlight = null;
        this._retryDelay = RETRY_MIN_MS;
        this._queue.shift();
        this._saveQueue();
        // Seen, so it is never emitted as received; it continues its matter's chain after its
        // previous_id (others' messages committed just before it may not have reached us yet).
        this._markSeen(stored.id);
        this._markShown(stored);
        this._ownSent(stored);
        this._emit('onQueueChanged', { queue: this.pendingMessages });
        // A catch-up or the socket may have brought it before this answer: emitted then, once.
        const early = this._sentEarly.has(item.client_message_id);
        this._sentEarly.delete(item.client_message_id);
        if (!early) this._emit('onMessageSent', { message: stored, client_message_id: item.client_message_id, queued: item.attempts > 1 || undefined });
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
