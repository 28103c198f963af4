// Shared helpers for the Parley end-to-end suite.
//
// Everything here talks to a real `parley serve` child process over real
// sockets on 127.0.0.1, using the real npm client libraries:
//   - pusher-js     (browser/Node WebSocket client)
//   - pusher        (Node server SDK: HTTP API + auth signatures)
//   - laravel-echo  (on top of pusher-js)
//   - ws            (raw frames, only where the protocol itself is under test)
//
// Every wait is bounded; nothing here can block forever.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import PusherClient from 'pusher-js';
import PusherServer from 'pusher';
import Echo from 'laravel-echo';
import WebSocket from 'ws';

export { PusherClient, PusherServer, Echo, WebSocket };

const here = path.dirname(fileURLToPath(import.meta.url));
export const E2E_DIR = path.resolve(here, '..');
export const PARLEY_BIN = path.resolve(E2E_DIR, process.env.PARLEY_BIN || '../../parley');

export const APP = Object.freeze({ appId: 'app-1', key: 'key-1', secret: 'secret-1' });

// One master key per test process; the server never sees it (it only relays).
export const ENCRYPTION_MASTER_KEY_BASE64 = crypto.randomBytes(32).toString('base64');

const LOG_CAP = 4 * 1024 * 1024;

// The server SDK's HTTP requests: no keep-alive, so an unread response body can
// never keep a test process alive.
const NO_KEEPALIVE = new http.Agent({ keepAlive: false });

// ---------------------------------------------------------------------------
// small utilities

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the promise's value, or with `fallback` after `ms` (the timer is always cleared). */
export function within(promise, ms, fallback = null) {
  let timer;
  return Promise.race([
    promise,
    new Promise((r) => { timer = setTimeout(() => r(fallback), ms); }),
  ]).finally(() => clearTimeout(timer));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function httpGetStatus(url, timeoutMs, ca) {
  return new Promise((resolve) => {
    const get = url.startsWith('https:') ? https.get : http.get;
    const req = get(url, { agent: false, timeout: timeoutMs, ...(ca ? { ca } : {}) }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
  });
}

/** JSON.stringify that never throws (for diagnostics). */
export function show(v) {
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

// ---------------------------------------------------------------------------
// waiting

/**
 * waitFor(condition, ms, label) polls a function until it returns a truthy
 * value (which is returned).
 * waitFor(emitter, ms, {event, filter, label}) waits for one event on a
 * pusher-js Dispatcher (bind/unbind) or a Node EventEmitter (on/off) and
 * resolves with its first argument.
 */
export function waitFor(target, ms, opts = {}) {
  if (typeof opts === 'string') opts = { label: opts };
  const label = opts.label || (opts.event ? `event "${opts.event}"` : 'condition');
  let p;
  if (typeof target === 'function') {
    p = new Promise((resolve, reject) => {
      const started = Date.now();
      const tick = () => {
        let v;
        try {
          v = target();
        } catch (err) {
          reject(err);
          return;
        }
        if (v) {
          resolve(v);
          return;
        }
        if (Date.now() - started >= ms) {
          reject(new Error(`timed out after ${ms} ms waiting for ${label}`));
          return;
        }
        setTimeout(tick, 20);
      };
      tick();
    });
  } else {
    const { event, filter } = opts;
    if (!event) throw new Error('waitFor(emitter, ms, {event}) needs an event name');
    p = new Promise((resolve, reject) => {
      const usesBind = typeof target.bind === 'function' && typeof target.unbind === 'function'
        && typeof target.on !== 'function';
      const on = (fn) => (usesBind ? target.bind(event, fn) : target.on(event, fn));
      const off = (fn) => (usesBind ? target.unbind(event, fn) : target.off(event, fn));
      const handler = (...args) => {
        if (filter && !filter(...args)) return;
        clearTimeout(timer);
        off(handler);
        resolve(args[0]);
      };
      const timer = setTimeout(() => {
        off(handler);
        reject(new Error(`timed out after ${ms} ms waiting for ${label}`));
      }, ms);
      on(handler);
    });
  }
  p.catch(() => {}); // avoid unhandled-rejection noise if the caller fails earlier
  return p;
}

// Absence is asserted with markers, never by waiting a fixed time (which
// passes whenever the forbidden event is merely slow): after the deed that
// must deliver nothing, a marker event goes by a path the server orders after
// anything the deed could have caused, and once the marker has arrived the
// test checks what it collected. See Ctx.marker.
export const MARKER_EVENT = 'test-marker';
let markerSeq = 0;

function isMarker(f) {
  return f.event === MARKER_EVENT || f.event === `client-${MARKER_EVENT}`;
}

// ---------------------------------------------------------------------------
// the server process

/**
 * Starts `parley serve` on a free port with a fresh data dir.
 * Returns {port, host, appId, key, secret, dataDir, child, log(), mark(), since(mark), stop()}.
 */
/**
 * Starts `parley serve`. `tlsCA` (a PEM string): the server was given a
 * certificate (PARLEY_TLS_CERT/KEY in env) that this CA signed, so readiness
 * is checked over https.
 */
export async function startParley({ env = {}, readyTimeoutMs = 15000, port: fixedPort, tlsCA } = {}) {
  if (!fs.existsSync(PARLEY_BIN)) {
    throw new Error(
      `Parley binary not found at ${PARLEY_BIN}.\n`
        + 'Build it first, from the repository root:  go build -o parley ./cmd/parley\n'
        + '(or point PARLEY_BIN at an existing binary).',
    );
  }
  try {
    fs.accessSync(PARLEY_BIN, fs.constants.X_OK);
  } catch {
    throw new Error(`Parley binary at ${PARLEY_BIN} is not executable; rebuild it with: go build -o parley ./cmd/parley`);
  }

  const host = '127.0.0.1';
  const port = fixedPort || await freePort();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-'));
  const childEnv = {
    ...process.env,
    PARLEY_HOST: host,
    PARLEY_PORT: String(port),
    PARLEY_APP_ID: APP.appId,
    PARLEY_APP_KEY: APP.key,
    PARLEY_APP_SECRET: APP.secret,
    PARLEY_DATA_DIR: dataDir,
    ...env,
  };

  let logText = '';
  const append = (prefix, chunk) => {
    const s = chunk.toString('utf8');
    logText += s.split(/(?<=\n)/).map((l) => (l.length ? prefix + l : l)).join('');
    if (logText.length > LOG_CAP) logText = logText.slice(logText.length - LOG_CAP);
  };

  const child = spawn(PARLEY_BIN, ['serve'], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (c) => append('[parley:out] ', c));
  child.stderr.on('data', (c) => append('[parley:err] ', c));

  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
    child.on('error', (err) => {
      exitInfo = { code: null, signal: null, error: err };
      resolve(exitInfo);
    });
  });

  const cleanupDir = () => {
    try {
      fs.rmSync(dataDir, { recursive: true, force: true });
    } catch {
      /* ignore */
    }
  };

  // Wait (bounded) for GET /up == 200.
  const deadline = Date.now() + readyTimeoutMs;
  let lastStatus = 0;
  for (;;) {
    if (exitInfo) {
      cleanupDir();
      throw new Error(
        `parley serve exited before becoming ready (${show(exitInfo)}).\n--- parley output ---\n${logText}`,
      );
    }
    lastStatus = await httpGetStatus(`${tlsCA ? 'https' : 'http'}://${host}:${port}/up`, 1000, tlsCA);
    if (lastStatus === 200) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await within(exited, 3000);
      cleanupDir();
      throw new Error(
        `parley serve did not answer 200 on GET /up within ${readyTimeoutMs} ms (last status ${lastStatus}).\n`
          + `--- parley output ---\n${logText}`,
      );
    }
    await sleep(100);
  }

  let stopping = null;
  const server = {
    host,
    port,
    appId: APP.appId,
    key: APP.key,
    secret: APP.secret,
    dataDir,
    child,
    exited,
    get exitInfo() {
      return exitInfo;
    },
    log: () => logText,
    mark: () => logText.length,
    since: (m) => logText.slice(Math.min(m, logText.length)),
    /** SIGTERM, wait up to `graceMs` (default 10 s), then SIGKILL. Resolves {code, signal, killed, ms}. */
    stop(graceMs = 10000) {
      if (stopping) return stopping;
      stopping = (async () => {
        const t0 = Date.now();
        let killed = false;
        if (!exitInfo) {
          child.kill('SIGTERM');
          const r = await within(exited, graceMs);
          if (!r) {
            killed = true;
            child.kill('SIGKILL');
            await within(exited, 5000);
          }
        }
        cleanupDir();
        return { ...(exitInfo || {}), killed, ms: Date.now() - t0 };
      })();
      return stopping;
    },
  };
  return server;
}

// ---------------------------------------------------------------------------
// per-test context: creates clients, records frames, cleans up, dumps logs on failure

/**
 * Test-harness hygiene only: pusher-js's bundled Node WebSocket client arms a
 * 30 s "close handshake" timer whenever pusher-js closes a socket, even one the
 * server already closed; that timer is never cleared and would keep each test
 * process alive for 30 s after its last test. Unref it (behaviour unchanged).
 */
function unrefCloseTimer(pusher) {
  const sock = pusher.connection && pusher.connection.connection && pusher.connection.connection.transport
    && pusher.connection.connection.transport.socket;
  if (!sock) return;
  let proto = sock;
  while (proto && !Object.prototype.hasOwnProperty.call(proto, 'close')) proto = Object.getPrototypeOf(proto);
  if (!proto || proto.__parleyUnrefPatched) return;
  const orig = proto.close;
  proto.close = function patchedClose(...args) {
    const r = orig.apply(this, args);
    if (this._closeTimer && typeof this._closeTimer.unref === 'function') this._closeTimer.unref();
    return r;
  };
  proto.__parleyUnrefPatched = true;
}

export function pusherErrorCode(err) {
  if (!err) return undefined;
  if (err.error && err.error.data && err.error.data.code !== undefined) return err.error.data.code;
  if (err.data && err.data.code !== undefined) return err.data.code;
  if (err.error && err.error.code !== undefined) return err.error.code;
  return undefined;
}

export class Ctx {
  constructor(server) {
    this.server = server;
    this.clients = []; // {name, pusher, frames, errors, states}
    this.echos = [];
    this.raw = [];
  }

  /** Server SDK for this server; overrides e.g. {secret:'wrong'} or {appId:'nope'}. */
  sdk(overrides = {}) {
    return new PusherServer({
      appId: this.server.appId,
      key: this.server.key,
      secret: this.server.secret,
      host: this.server.host,
      port: String(this.server.port),
      useTLS: false,
      timeout: 5000,
      agent: NO_KEEPALIVE,
      encryptionMasterKeyBase64: ENCRYPTION_MASTER_KEY_BASE64,
      ...overrides,
    });
  }

  /**
   * pusher-js options with custom handlers that sign with the server SDK,
   * exactly as an app backend would.
   *   user:       {id, info} for presence channel_data and signin user_data
   *   authSdk:    SDK used to sign (default: correct secret)
   */
  pusherOptions({ user, authSdk, extra = {} } = {}) {
    const signer = authSdk || this.sdk();
    return {
      wsHost: this.server.host,
      wsPort: this.server.port,
      forceTLS: false,
      enabledTransports: ['ws'],
      cluster: 'mt1',
      disableStats: true,
      channelAuthorization: {
        customHandler: ({ socketId, channelName }, callback) => {
          try {
            let presence;
            if (channelName.startsWith('presence-')) {
              if (!user) throw new Error(`no user configured for ${channelName}`);
              presence = { user_id: String(user.id), user_info: user.info };
            }
            callback(null, signer.authorizeChannel(socketId, channelName, presence));
          } catch (err) {
            callback(err, null);
          }
        },
      },
      userAuthentication: {
        customHandler: ({ socketId }, callback) => {
          try {
            if (!user) throw new Error('no user configured for signin');
            const userData = { id: String(user.id) };
            if (user.info) userData.user_info = user.info;
            callback(null, signer.authenticateUser(socketId, userData));
          } catch (err) {
            callback(err, null);
          }
        },
      },
      ...extra,
    };
  }

  /** Instruments a pusher-js instance: records frames in/out, errors and states. */
  track(name, pusher) {
    const rec = { name, pusher, frames: [], errors: [], states: [] };
    const conn = pusher.connection;
    // Record incoming frames before any pusher-js listener reacts to them, so
    // the log shows the true order on the wire.
    const origEmit = conn.emit.bind(conn);
    conn.emit = (eventName, data) => {
      if (eventName === 'message' && data) {
        rec.frames.push({ dir: 'in', t: Date.now(), event: data.event, channel: data.channel, data: data.data, user_id: data.user_id });
      }
      return origEmit(eventName, data);
    };
    conn.bind('connected', () => unrefCloseTimer(pusher));
    conn.bind('error', (err) => rec.errors.push(err));
    conn.bind('state_change', (s) => rec.states.push(`${s.previous}->${s.current}`));
    const origSendEvent = conn.send_event.bind(conn);
    conn.send_event = (event, data, channel) => {
      rec.frames.push({ dir: 'out', t: Date.now(), event, channel, data });
      return origSendEvent(event, data, channel);
    };
    this.clients.push(rec);
    return rec;
  }

  /**
   * New pusher-js client. By default waits (bounded) until connected.
   * opts: {name, key, user, authSdk, extra, connect=true, timeout=8000}
   */
  async pusher(opts = {}) {
    const { name = `client${this.clients.length + 1}`, key = this.server.key, connect = true, timeout = 8000 } = opts;
    const pusher = new PusherClient(key, this.pusherOptions(opts));
    this.track(name, pusher);
    if (connect) await connected(pusher, timeout, name);
    return pusher;
  }

  /** laravel-echo instance on top of pusher-js; waits until connected. */
  async echo(opts = {}) {
    const { name = `echo${this.echos.length + 1}`, user, broadcaster = 'reverb', extra = {} } = opts;
    const signer = opts.authSdk || this.sdk();
    const echo = new Echo({
      broadcaster,
      key: this.server.key,
      wsHost: this.server.host,
      wsPort: this.server.port,
      forceTLS: false,
      enabledTransports: ['ws'],
      disableStats: true,
      ...(broadcaster === 'pusher' ? { cluster: 'mt1' } : {}),
      Pusher: PusherClient,
      // Laravel's documented `authorizer` hook; the backend side is the real SDK.
      authorizer: (channel) => ({
        authorize: (socketId, callback) => {
          try {
            let presence;
            if (channel.name.startsWith('presence-')) {
              presence = { user_id: String(user.id), user_info: user.info };
            }
            callback(null, signer.authorizeChannel(socketId, channel.name, presence));
          } catch (err) {
            callback(err, null);
          }
        },
      }),
      ...extra,
    });
    const pusher = echo.connector.pusher;
    this.track(name, pusher);
    this.echos.push(echo);
    await connected(pusher, 8000, name);
    return echo;
  }

  /** Raw `ws` socket to /app/{key}; records frames; resolves once open. */
  async rawSocket(key = this.server.key, { name = `raw${this.raw.length + 1}`, timeout = 5000 } = {}) {
    const url = `ws://${this.server.host}:${this.server.port}/app/${encodeURIComponent(key)}?protocol=7&client=js&version=8.6.0&flash=false`;
    const ws = new WebSocket(url);
    const rec = { name, ws, frames: [], close: null, messages: [] };
    rec.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        rec.close = { code, reason: reason.toString() };
        resolve(rec.close);
      });
    });
    ws.on('message', (buf) => {
      const text = buf.toString();
      rec.frames.push({ dir: 'in', text });
      try {
        rec.messages.push(JSON.parse(text));
      } catch {
        rec.messages.push({ unparsable: text });
      }
    });
    ws.on('error', (err) => rec.frames.push({ dir: 'error', text: String(err && err.message) }));
    rec.send = (obj) => {
      const text = JSON.stringify(obj);
      rec.frames.push({ dir: 'out', text });
      ws.send(text);
    };
    this.raw.push(rec);
    await waitFor(() => ws.readyState === WebSocket.OPEN || rec.close, timeout, `${name} to open`);
    return rec;
  }

  /** The record (frames in and out) of a pusher-js client, an Echo instance or a raw socket. */
  recordOf(client) {
    const pusher = client && client.connector ? client.connector.pusher : client;
    const rec = this.clients.find((c) => c.pusher === pusher) || this.raw.find((r) => r === client);
    if (!rec) throw new Error('recordOf: not a client of this test');
    return rec;
  }

  /** The frames a client received so far, in wire order: [{event, channel, data}]. */
  received(client) {
    const rec = this.recordOf(client);
    if (rec.messages) {
      return rec.messages.map((m) => {
        let { data } = m;
        try {
          if (typeof data === 'string') data = JSON.parse(data);
        } catch { /* a plain string */ }
        return { event: m.event, channel: m.channel, data };
      });
    }
    return rec.frames.filter((f) => f.dir === 'in');
  }

  /**
   * Absence without a fixed wait. Sends a marker that the server delivers to
   * `client` after anything the test forbids, and resolves once it arrived:
   * a forbidden frame would have come first, so what the test collected is
   * then final. By default the marker is published to `channel` through the
   * HTTP API (a channel hands out its events in publish order, so it follows
   * everything published there before); `send(data)` sends it another way,
   * e.g. as a peer's client event on the channel (`client-test-marker`) or
   * with sendToUser. Resolves with the frames `client` received from the call
   * up to the marker, markers left out.
   */
  async marker(client, channel, { send, ms = 5000 } = {}) {
    const id = `m-${process.pid}-${++markerSeq}`;
    const start = this.received(client).length;
    if (send) await send({ marker: id });
    else await this.sdk().trigger(channel, MARKER_EVENT, { marker: id });
    let between = null;
    await waitFor(() => {
      const got = this.received(client).slice(start);
      const i = got.findIndex((f) => isMarker(f) && f.data && f.data.marker === id);
      if (i >= 0) between = got.slice(0, i).filter((f) => !isMarker(f));
      return between;
    }, ms, `marker ${id}${channel ? ` on ${channel}` : ''} at ${this.recordOf(client).name}`);
    return between;
  }

  /**
   * Resolves once the server answered a pusher:ping from `client`: it has
   * handled everything the client sent before, and whatever it passed on to a
   * channel is queued there ahead of anything published from now on.
   */
  async roundTrip(client) {
    const pongs = () => this.received(client).filter((f) => f.event === 'pusher:pong').length;
    const before = pongs();
    const rec = this.recordOf(client);
    if (rec.messages) rec.send({ event: 'pusher:ping', data: {} });
    else rec.pusher.connection.send_event('pusher:ping', {});
    await waitFor(() => pongs() > before, 5000, `pusher:pong at ${rec.name}`);
  }

  report() {
    const lines = [];
    for (const c of this.clients) {
      let sock = '';
      try {
        sock = c.pusher.connection.socket_id || '';
      } catch {
        /* ignore */
      }
      lines.push(`  [${c.name}] socket_id=${sock} state=${c.pusher.connection.state} states=${c.states.join(',')}`);
      for (const e of c.errors) lines.push(`    error: ${show(e)}`);
      for (const f of c.frames) {
        lines.push(`    ${f.dir === 'in' ? '<-' : '->'} ${show({ event: f.event, channel: f.channel, data: f.data, user_id: f.user_id })}`);
      }
    }
    for (const r of this.raw) {
      lines.push(`  [${r.name}] raw ws close=${show(r.close)}`);
      for (const f of r.frames) lines.push(`    ${f.dir === 'in' ? '<-' : f.dir === 'out' ? '->' : '!!'} ${f.text}`);
    }
    return lines.join('\n');
  }

  async close() {
    for (const echo of this.echos) {
      try {
        echo.disconnect();
      } catch {
        /* ignore */
      }
    }
    for (const c of this.clients) {
      try {
        c.pusher.disconnect();
      } catch {
        /* ignore */
      }
    }
    for (const r of this.raw) {
      try {
        if (r.ws.readyState === WebSocket.OPEN || r.ws.readyState === WebSocket.CONNECTING) r.ws.terminate();
      } catch {
        /* ignore */
      }
    }
    await waitFor(
      () => this.clients.every((c) => ['disconnected', 'failed', 'initialized'].includes(c.pusher.connection.state)),
      3000,
      'clients to disconnect',
    ).catch(() => {});
  }
}

/**
 * Wraps a test body: gives it a fresh Ctx, always disconnects every client,
 * and on failure prints the frames each client saw plus the server output.
 */
export function scenario(getServer, fn) {
  return async (t) => {
    const server = getServer();
    if (!server) throw new Error('server was not started');
    const ctx = new Ctx(server);
    const mark = server.mark();
    try {
      await fn(ctx, t);
    } catch (err) {
      console.error(
        `\n===== FAILED: ${t.name} =====\n${err && err.stack ? err.stack : err}\n`
          + `--- client frames ---\n${ctx.report()}\n`
          + `--- parley output during the test ---\n${server.since(mark) || '(none)'}\n===== end ${t.name} =====`,
      );
      throw err;
    } finally {
      await ctx.close();
    }
  };
}

/**
 * Standard before/after wiring: returns () => server.
 * If the server cannot start (e.g. the binary is not built), every test of the
 * file fails with that reason instead of being silently cancelled.
 */
export function useServer({ before, after }, opts = {}) {
  let server = null;
  let startError = null;
  before(async () => {
    try {
      server = await startParley(opts);
    } catch (err) {
      startError = err;
    }
  });
  after(async () => {
    if (!server) return;
    const res = await server.stop();
    if (res.killed) console.error(`parley did not exit within 10 s of SIGTERM and was killed.\n${server.log()}`);
  });
  return () => {
    if (startError) throw startError;
    return server;
  };
}

// ---------------------------------------------------------------------------
// pusher-js conveniences

export async function connected(pusher, ms = 8000, name = 'client') {
  if (pusher.connection.state === 'connected') return pusher.connection.socket_id;
  const errors = [];
  const onErr = (e) => errors.push(e);
  pusher.connection.bind('error', onErr);
  try {
    await waitFor(() => pusher.connection.state === 'connected', ms, `${name} to reach state "connected"`);
  } catch (err) {
    err.message += ` (state=${pusher.connection.state}; errors=${show(errors)})`;
    throw err;
  } finally {
    pusher.connection.unbind('error', onErr);
  }
  return pusher.connection.socket_id;
}

/**
 * Subscribes and waits for pusher:subscription_succeeded; rejects on
 * pusher:subscription_error (or timeout). Resolves with the channel.
 */
export async function subscribed(pusher, channelName, ms = 5000) {
  const channel = pusher.subscribe(channelName);
  if (channel.subscribed) return channel;
  const connErrors = [];
  const onConnErr = (e) => connErrors.push(e);
  pusher.connection.bind('error', onConnErr);
  try {
    await new Promise((resolve, reject) => {
      const done = (fn, arg) => {
        clearTimeout(timer);
        channel.unbind('pusher:subscription_succeeded', ok);
        channel.unbind('pusher:subscription_error', bad);
        fn(arg);
      };
      const ok = () => done(resolve);
      const bad = (e) => done(reject, new Error(`pusher:subscription_error on ${channelName}: ${show(e)}`));
      const timer = setTimeout(
        () => done(reject, new Error(
          `timed out after ${ms} ms waiting for pusher:subscription_succeeded on ${channelName}`
            + ` (connection errors: ${show(connErrors)})`,
        )),
        ms,
      );
      channel.bind('pusher:subscription_succeeded', ok);
      channel.bind('pusher:subscription_error', bad);
    });
  } finally {
    pusher.connection.unbind('error', onConnErr);
  }
  return channel;
}

/** Collects every occurrence of `event` on a channel/dispatcher: [{data, meta}]. */
export function collect(target, event) {
  const got = [];
  target.bind(event, (data, meta) => got.push({ data, meta }));
  return got;
}

export function newId(prefix = 'x') {
  return `${prefix}${crypto.randomBytes(4).toString('hex')}`;
}

// ---------------------------------------------------------------------------
// laravel-echo as a Laravel front end uses it

/**
 * laravel-echo exactly as a Laravel front end configures it for Reverb (or,
 * with `broadcaster: 'pusher'`, for Pusher), authorized by the server's
 * /api/broadcasting/auth with a bearer token; `ctx` is a Ctx (a scenario's or
 * a cluster node's).
 */
export async function chatEcho(ctx, token, name, { broadcaster = 'reverb' } = {}) {
  const srv = ctx.server;
  const echo = new Echo({
    broadcaster,
    key: srv.key,
    wsHost: srv.host,
    wsPort: srv.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    ...(broadcaster === 'pusher' ? { cluster: 'mt1' } : {}),
    Pusher: PusherClient,
    authEndpoint: `http://${srv.host}:${srv.port}/api/broadcasting/auth`,
    auth: { headers: { Authorization: `Bearer ${token}` } },
  });
  ctx.track(name, echo.connector.pusher);
  ctx.echos.push(echo);
  await connected(echo.connector.pusher, 8000, name);
  return echo;
}

/** Waits for an Echo channel's subscription to succeed; fails fast on subscription_error. */
export function subscribedVia(echoChannel, label, ms = 5000) {
  let ok = false;
  let err = null;
  echoChannel.subscribed(() => { ok = true; });
  echoChannel.error((e) => { err = e; });
  return waitFor(() => {
    if (err) throw new Error(`${label}: subscription error ${show(err)}`);
    return ok || (echoChannel.subscription && echoChannel.subscription.subscribed);
  }, ms, `${label} subscription`);
}

// ---------------------------------------------------------------------------
// chat helpers: admin commands, REST calls, a network outage

const execFileP = promisify(execFile);

/** Runs `parley <args>` with env added to the environment; returns its JSON output. */
export async function parleyJSON(env, args) {
  let out;
  try {
    out = await execFileP(PARLEY_BIN, args, { env: { ...process.env, ...env }, timeout: 20000 });
  } catch (err) {
    throw new Error(`parley ${args.join(' ')} failed: ${err.message}\nstdout: ${err.stdout}\nstderr: ${err.stderr}`);
  }
  return JSON.parse(out.stdout);
}

/** Runs an admin command (`parley users create ...`) on the data dir's embedded database; returns its JSON. */
export function runAdmin(dataDir, args) {
  return parleyJSON({ PARLEY_DATA_DIR: dataDir }, args);
}

/**
 * The options of a RealtimeChat (clients/js) for `user` with the bearer `token` against 127.0.0.1:
 * the WebSocket at `wsPort` (the app `key`), REST at `apiPort`, no storage; `opts` added last.
 */
export function sdkOptions({ key, wsPort, apiPort, user, token }, opts = {}) {
  return {
    wsHost: '127.0.0.1',
    wsPort,
    reverbKey: key,
    forceTLS: false,
    authToken: token,
    userId: user.id,
    userName: user.name,
    apiBaseUrl: `http://127.0.0.1:${apiPort}/api`,
    storage: null,
    ...opts,
  };
}

/** Disconnects each client (an SDK or Echo), going on past one that throws. */
export function disconnectAll(clients) {
  for (const c of clients) {
    try {
      c.disconnect();
    } catch { /* ignore */ }
  }
}

/** Makes a user per name with the admin CLI (e-mail `<name>@<domain>`, all with `password`); resolves them in order. */
export async function adminUsers(dataDir, domain, password, names) {
  const users = [];
  for (const name of names) {
    users.push(await runAdmin(dataDir, ['users', 'create', '--name', name, '--email', `${name.toLowerCase()}@${domain}`, '--password', password]));
  }
  return users;
}

/** A matter made with the admin CLI, then each of `users` added to it one by one. */
export async function adminMatter(dataDir, title, users) {
  const m = await runAdmin(dataDir, ['matters', 'create', '--title', title]);
  for (const u of users) await runAdmin(dataDir, ['matters', 'add-member', '--matter', String(m.id), '--user', String(u.id)]);
  return m;
}

/**
 * One chat REST call with Node's fetch, bounded by `timeout` ms (5 s): {status, body, headers}.
 * `target` is a server from startParley or a port on 127.0.0.1.
 */
export async function chatApi(target, method, p, { token, body, headers = {}, timeout = 5000 } = {}) {
  const base = typeof target === 'number' ? `127.0.0.1:${target}` : `${target.host}:${target.port}`;
  const h = { Accept: 'application/json', ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const res = await fetch(`http://${base}${p}`, {
    method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(timeout),
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { unparsable: text };
  }
  return { status: res.status, body: json, headers: res.headers };
}

/** chatApi that requires `status` (default 200) and returns the body. */
export async function chatOk(target, method, p, opts, status = 200) {
  const res = await chatApi(target, method, p, opts);
  assert.equal(res.status, status, `${method} ${p}: expected ${status}, got ${res.status} ${show(res.body)}`);
  return res.body;
}

/** Logs each of `users` in (all with `password`) through the chat API at `target`; resolves tok[user.id], the bearer tokens. */
export async function loginTokens(target, users, password) {
  const tok = {};
  for (const u of users) tok[u.id] = (await chatOk(target, 'POST', '/api/auth/login', { body: { email: u.email, password } })).token;
  return tok;
}

/**
 * Pipes the sockets `client` and `upstream` into each other, the pair kept in the set `pairs`
 * until either side errs or closes; then both are destroyed.
 */
export function splice(pairs, client, upstream) {
  const pair = [client, upstream];
  pairs.add(pair);
  const drop = () => {
    pairs.delete(pair);
    client.destroy();
    upstream.destroy();
  };
  client.on('error', drop).on('close', drop);
  upstream.on('error', drop).on('close', drop);
  client.pipe(upstream);
  upstream.pipe(client);
}

/**
 * A TCP gate in front of a port: while closed it cuts every connection through
 * it and refuses (resets) new ones, as a network outage does.
 */
export async function tcpGate(targetPort) {
  const pairs = new Set();
  let open = true;
  const server = net.createServer((client) => {
    if (!open) {
      client.resetAndDestroy();
      return;
    }
    splice(pairs, client, net.connect(targetPort, '127.0.0.1'));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    close() {
      open = false;
      for (const [c, u] of pairs) {
        c.resetAndDestroy();
        u.destroy();
      }
      pairs.clear();
    },
    open() {
      open = true;
    },
    stop: () => new Promise((r) => {
      open = false;
      for (const [c, u] of pairs) {
        c.destroy();
        u.destroy();
      }
      server.close(() => r());
    }),
  };
}
