// Helpers for fault.test.js: a three-node cluster whose nodes can be killed,
// restarted on the same ports, frozen and thawed; a TCP load balancer in
// front of it that health-checks GET /up; and a TCP gate per client that can
// cut the client off and that reads, without changing a byte, what passes
// through it: the WebSocket close frames in both directions and the HTTP
// requests the client sends (method, path, body).
//
// Everything stays on 127.0.0.1 and every wait is bounded.

import http from 'node:http';
import net from 'node:net';

import { sleep, splice, startParley, waitFor, within } from './helpers.js';
import { clusterPorts, waitForMesh } from './cluster-helpers.js';

// ---------------------------------------------------------------------------
// small things

/** GET url → its status, 0 when there was no answer within timeoutMs. */
export function httpStatus(url, timeoutMs) {
  return new Promise((resolve) => {
    let done = false;
    const finish = (v) => {
      if (!done) {
        done = true;
        resolve(v);
      }
    };
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      finish(res.statusCode);
    });
    req.on('timeout', () => {
      req.destroy(new Error('timeout'));
      finish(0);
    });
    req.on('error', () => finish(0));
  });
}

// ---------------------------------------------------------------------------
// the cluster

/**
 * One node of the cluster. `server` is the running startParley object of its
 * current process (null while it is killed); restart() starts a new process
 * on the same HTTP and cluster ports with the same environment. log() keeps
 * the output of every process it ran.
 */
class ClusterNode {
  constructor(index, port, clusterAddress, env) {
    this.index = index;
    this.port = port;
    this.host = '127.0.0.1';
    this.clusterAddress = clusterAddress;
    this.env = env;
    this.server = null;
    this.previousLogs = '';
    this.frozen = false;
  }

  get key() {
    return this.server ? this.server.key : 'key-1';
  }

  async start(readyTimeoutMs = 30000) {
    this.server = await startParley({ port: this.port, env: this.env, readyTimeoutMs });
    return this.server;
  }

  /** SIGKILL; resolves once the process is gone. */
  async kill() {
    const s = this.server;
    if (!s) return;
    if (this.frozen) this.thaw();
    s.child.kill('SIGKILL');
    await within(s.exited, 10000);
    this.previousLogs += `${s.log()}\n----- (killed with SIGKILL) -----\n`;
    await s.stop(); // removes its data dir
    this.server = null;
  }

  /** Starts a new process on the same ports (after kill()); resolves once GET /up answers 200. */
  async restart() {
    if (this.server) throw new Error(`node ${this.index} is still running`);
    return this.start();
  }

  freeze() {
    this.server.child.kill('SIGSTOP');
    this.frozen = true;
  }

  thaw() {
    if (!this.frozen) return;
    this.server.child.kill('SIGCONT');
    this.frozen = false;
  }

  log() {
    return this.previousLogs + (this.server ? this.server.log() : '');
  }

  async stop() {
    if (!this.server) return null;
    this.thaw();
    const r = await this.server.stop();
    this.previousLogs += this.server.log();
    this.server = null;
    return r;
  }
}

/**
 * Starts n clustered nodes on one database. env goes to every node,
 * nodeEnv[i] to node i+1 only. Resolves the ClusterNodes once every node
 * forwards publishes to every other (as cluster-helpers' startCluster does).
 */
export async function startFaultCluster({ n = 3, databaseUrl, env = {}, nodeEnv = [], meshTimeoutMs = 30000 }) {
  const ports = await clusterPorts(n);
  const addrs = ports.cluster.map((p) => `127.0.0.1:${p}`);
  const nodes = addrs.map((addr, i) => new ClusterNode(i + 1, ports.http[i], addr, {
    PARLEY_CLUSTER_ADDRESS: addr,
    PARLEY_CLUSTER_PEERS: addrs.filter((a) => a !== addr).join(','),
    DATABASE_URL: databaseUrl,
    ...env,
    ...(nodeEnv[i] || {}),
  }));
  const started = await Promise.allSettled(nodes.map((node) => node.start()));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(nodes.map((node) => node.stop()));
    throw failed.reason;
  }
  try {
    await waitForMesh(nodes, meshTimeoutMs, (node) => node.server);
  } catch (err) {
    await Promise.all(nodes.map((node) => node.stop()));
    throw err;
  }
  return nodes;
}

/**
 * A TCP load balancer in front of the nodes, as nginx or an ALB is: every
 * `everyMs` it asks each node GET /up (no answer within `timeoutMs`, or not
 * 200: out of rotation until it answers 200 again); each new connection goes
 * to the next node in rotation, and to the one after it when the connection
 * is refused. It never cuts a connection itself: a node that dies or stops
 * serving closes its own. Resolves {port, healthy(index), stats, stop()}.
 */
export async function loadBalancer(nodes, { everyMs = 250, timeoutMs = 600 } = {}) {
  const health = new Map(nodes.map((node) => [node.index, { ok: false, changes: [] }]));
  const stats = {
    connections: Object.fromEntries(nodes.map((node) => [node.index, 0])), // proxied, per node
    connectFailures: 0, // a node refused the connection: the next one was tried
    noBackend: 0, // no node in rotation (or every one refused): the client was reset
  };
  const pairs = new Set();
  let stopped = false;
  let rr = 0;

  const checkLoop = async (node) => {
    while (!stopped) {
      const status = await httpStatus(`http://127.0.0.1:${node.port}/up`, timeoutMs);
      const h = health.get(node.index);
      const ok = status === 200;
      if (ok !== h.ok) h.changes.push({ t: Date.now(), ok, status });
      h.ok = ok;
      await sleep(everyMs);
    }
  };

  const server = net.createServer((client) => {
    client.pause();
    client.on('error', () => {});
    const inRotation = nodes.filter((node) => health.get(node.index).ok);
    if (!inRotation.length) {
      stats.noBackend += 1;
      client.resetAndDestroy();
      return;
    }
    const start = rr++ % inRotation.length;
    const order = inRotation.slice(start).concat(inRotation.slice(0, start));
    const attempt = (k) => {
      if (client.destroyed) return;
      if (k >= order.length) {
        stats.noBackend += 1;
        client.resetAndDestroy();
        return;
      }
      const node = order[k];
      const upstream = net.connect(node.port, '127.0.0.1');
      const onConnectError = () => {
        stats.connectFailures += 1;
        upstream.destroy();
        attempt(k + 1);
      };
      upstream.once('error', onConnectError);
      upstream.once('connect', () => {
        upstream.off('error', onConnectError);
        if (client.destroyed) {
          upstream.destroy();
          return;
        }
        stats.connections[node.index] += 1;
        splice(pairs, client, upstream);
        client.resume();
      });
    };
    attempt(0);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const loops = nodes.map((node) => checkLoop(node));
  // Ready once every node was checked once.
  await waitFor(() => nodes.every((node) => health.get(node.index).changes.length > 0), 10000, 'the balancer\'s first health checks');
  return {
    port: server.address().port,
    healthy: (index) => health.get(index).ok,
    health,
    stats,
    async stop() {
      stopped = true;
      for (const [c, u] of pairs) {
        c.destroy();
        u.destroy();
      }
      await new Promise((r) => server.close(() => r()));
      await within(Promise.all(loops), 3000);
    },
  };
}

// ---------------------------------------------------------------------------
// the gate: a client's network

/**
 * Streaming reader of WebSocket frames after an HTTP head (the upgrade
 * request or its 101 answer): calls onClose(code, reason) for a close frame
 * (unmasking client frames). Other frames are skipped without being kept.
 */
function wsCloseReader(onClose) {
  let buf = Buffer.alloc(0);
  let headDone = false;
  let skip = 0;
  return (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    if (!headDone) {
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      buf = buf.subarray(i + 4);
      headDone = true;
    }
    for (;;) {
      if (skip > 0) {
        const n = Math.min(skip, buf.length);
        buf = buf.subarray(n);
        skip -= n;
        if (skip > 0) return;
      }
      if (buf.length < 2) return;
      const opcode = buf[0] & 0x0f;
      const masked = (buf[1] & 0x80) !== 0;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      if (masked) off += 4;
      if (buf.length < off) return;
      if (opcode !== 0x8) {
        buf = buf.subarray(off);
        skip = len;
        continue;
      }
      if (buf.length < off + len) return;
      const payload = Buffer.from(buf.subarray(off, off + len));
      if (masked) {
        const mask = buf.subarray(off - 4, off);
        for (let j = 0; j < payload.length; j++) payload[j] ^= mask[j % 4];
      }
      onClose(payload.length >= 2 ? payload.readUInt16BE(0) : 1005, payload.subarray(2).toString('utf8'));
      buf = buf.subarray(off + len);
    }
  };
}

/**
 * Streaming reader of HTTP/1.1 requests (Content-Length bodies; a chunked one
 * is reported with body null and chunked true): onHead(method, path) at each
 * request head, onRequest({method, path, body}) once its body passed. Returns
 * the feeder and a function that hands the rest of the stream to another
 * reader (after an upgrade).
 */
function httpRequestReader(onHead, onRequest) {
  let buf = Buffer.alloc(0);
  let cur = null;
  let handOff = null;
  const feed = (chunk) => {
    if (handOff) {
      handOff(chunk);
      return;
    }
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    for (;;) {
      if (!cur) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = buf.subarray(0, i).toString('latin1');
        const [line, ...headers] = head.split('\r\n');
        const [method, path] = line.split(' ');
        let length = 0;
        let chunked = false;
        for (const h of headers) {
          const m = /^content-length:\s*(\d+)/i.exec(h);
          if (m) length = Number(m[1]);
          if (/^transfer-encoding:.*chunked/i.test(h)) chunked = true;
        }
        cur = { method, path, length, chunked, head: buf.subarray(0, i + 4) };
        buf = buf.subarray(i + 4);
        const next = onHead(method, path);
        if (next) {
          // An upgrade: what follows is another protocol; give it the head
          // (its reader skips it) and the rest.
          handOff = next;
          const rest = buf;
          buf = Buffer.alloc(0);
          next(cur.head);
          if (rest.length) next(rest);
          return;
        }
        if (chunked) {
          onRequest({ method, path, body: null, chunked: true });
          handOff = () => {}; // not followed further
          return;
        }
      }
      if (buf.length < cur.length) return;
      const body = buf.subarray(0, cur.length).toString('utf8');
      buf = buf.subarray(cur.length);
      onRequest({ method: cur.method, path: cur.path, body });
      cur = null;
    }
  };
  return feed;
}

/**
 * A client's network: a TCP gate in front of `targetPort` (the balancer).
 * close() cuts every connection through it and refuses (resets) new ones, as
 * an outage does; open() lets the client back. It reads what passes without
 * changing it:
 *   sockets: every WebSocket connection: {opened, ended, closes: [{t, code, reason, from}], cut}
 *     (`from` 'server' or 'client'; a socket that ended without a close frame has cut: 'gate'
 *     when the gate cut it, 'upstream' when the other side went away, 'client' when the client did)
 *   requests: every HTTP request: {t, method, path, body} (t: when its last byte passed)
 */
export async function clientGate(targetPort, name) {
  const conns = new Set();
  let open = true;
  const stats = { accepted: 0, refused: 0, cuts: 0 };
  const sockets = [];
  const requests = [];
  const server = net.createServer((client) => {
    client.on('error', () => {});
    if (!open) {
      stats.refused += 1;
      client.resetAndDestroy();
      return;
    }
    stats.accepted += 1;
    const upstream = net.connect(targetPort, '127.0.0.1');
    const conn = { client, upstream, ws: null, ended: false, by: null };
    conns.add(conn);
    const toServer = httpRequestReader((method, path) => {
      if (method === 'GET' && /^\/app\//.test(path)) {
        conn.ws = { opened: Date.now(), ended: null, closes: [], cut: null };
        sockets.push(conn.ws);
        return wsCloseReader((code, reason) => conn.ws.closes.push({ t: Date.now(), code, reason, from: 'client' }));
      }
      return null;
    }, (req) => requests.push({ t: Date.now(), ...req }));
    let toClient = null;
    const end = (by) => {
      if (conn.ended) return;
      conn.ended = true;
      conn.by = by;
      conns.delete(conn);
      if (conn.ws) {
        conn.ws.ended = Date.now();
        if (!conn.ws.closes.length) conn.ws.cut = by;
      }
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (chunk) => toServer(chunk));
    upstream.on('data', (chunk) => {
      if (!conn.ws) return;
      if (!toClient) toClient = wsCloseReader((code, reason) => conn.ws.closes.push({ t: Date.now(), code, reason, from: 'server' }));
      toClient(chunk);
    });
    client.on('close', () => end('client'));
    upstream.on('error', () => end('upstream')).on('close', () => end('upstream'));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    name,
    port: server.address().port,
    stats,
    sockets,
    requests,
    get isOpen() {
      return open;
    },
    close() {
      open = false;
      for (const conn of [...conns]) {
        stats.cuts += 1;
        // Recorded here: the sockets' close events come later.
        conn.ended = true;
        conn.by = 'gate';
        if (conn.ws) {
          conn.ws.ended = Date.now();
          if (!conn.ws.closes.length) conn.ws.cut = 'gate';
        }
        conns.delete(conn);
        conn.client.resetAndDestroy();
        conn.upstream.destroy();
      }
    },
    open() {
      open = true;
    },
    stop: () => new Promise((r) => {
      open = false;
      for (const conn of conns) {
        conn.client.destroy();
        conn.upstream.destroy();
      }
      server.close(() => r());
    }),
  };
}

/**
 * How a client's sockets ended, counted: {'server 4210': 2, 'cut by gate': 1, ...}.
 * The first close frame of a socket names it (`from` says which side sent it).
 */
export function closeCounts(gate) {
  const out = {};
  for (const s of gate.sockets) {
    if (!s.ended && !s.closes.length) continue; // still open
    const key = s.closes.length ? `${s.closes[0].from} ${s.closes[0].code}` : `cut by ${s.cut}`;
    out[key] = (out[key] || 0) + 1;
  }
  return out;
}
