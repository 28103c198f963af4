// Helpers for the cluster tests: a fresh PostgreSQL database, three
// `parley serve` processes joined into one cluster, REST calls, and a test
// wrapper that gives each node its own client context.
//
// Everything stays on 127.0.0.1 and every wait is bounded.

import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import net from 'node:net';
import { promisify } from 'node:util';

import {
  Ctx,
  chatApi,
  parleyJSON,
  show,
  startParley,
  subscribed,
  waitFor,
} from './helpers.js';

const execFileP = promisify(execFile);

export const UNDER_CI = Boolean(process.env.CI) && process.env.CI !== 'false';
export const PASSWORD = 'correct horse battery';

// The database the Go tests use; the cluster tests connect to it only to
// create (and later drop) a database of their own.
export const ADMIN_DATABASE_URL = process.env.PARLEY_TEST_DATABASE_URL
  || 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable';

// ---------------------------------------------------------------------------
// PostgreSQL through psql

async function psql(url, sql, timeout = 15000) {
  try {
    const { stdout } = await execFileP('psql', [url, '-v', 'ON_ERROR_STOP=1', '-Atqc', sql], { timeout });
    return stdout.trim();
  } catch (err) {
    throw new Error(`psql "${sql}" failed: ${err.message}\n${err.stderr || ''}`);
  }
}

/** The URL of database `name` on the same server as ADMIN_DATABASE_URL. */
function databaseURL(name) {
  const u = new URL(ADMIN_DATABASE_URL);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Creates a fresh database; resolves {url, name, query(sql), drop()}. */
export async function freshDatabase(prefix = 'parley_cluster_e2e') {
  const name = `${prefix}_${crypto.randomBytes(4).toString('hex')}`;
  await psql(ADMIN_DATABASE_URL, `CREATE DATABASE ${name}`);
  const url = databaseURL(name);
  return {
    name,
    url,
    query: (sql) => psql(url, sql),
    drop: () => psql(ADMIN_DATABASE_URL, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

/**
 * The receipts of members in the given matters, as the read model of
 * migration 0007 keeps them (see persistence/readstate.go): a message from
 * another member, not deleted, is read by a member when the member has a
 * message_reads row for it (a single read) or a read_ranges row covering it
 * (a read up to a message); the single read wins. Each row is
 * "message_id|user_id|read_at in ms".
 */
export function receiptsSQL(matterIds) {
  return `SELECT m.id, b.user_id, floor(extract(epoch from COALESCE(r.read_at, g.read_at)) * 1000)::bigint
    FROM messages m JOIN members b ON b.matter_id = m.matter_id AND b.user_id <> m.sender_id
    LEFT JOIN message_reads r ON r.message_id = m.id AND r.user_id = b.user_id
    LEFT JOIN read_ranges g ON g.matter_id = m.matter_id AND g.user_id = b.user_id AND m.id > g.from_id AND m.id <= g.to_id
    WHERE m.matter_id IN (${matterIds.join(',')}) AND m.deleted_at IS NULL
      AND (r.message_id IS NOT NULL OR g.to_id IS NOT NULL)`;
}

/**
 * The number of messages from others, not deleted, that members of the
 * given matters (or only userId) have not read: neither at or below their
 * read position nor read on their own.
 */
export function unreadSQL(matterIds, userId = null) {
  return `SELECT count(*) FROM messages m JOIN members b ON b.matter_id = m.matter_id AND b.user_id <> m.sender_id
    LEFT JOIN read_positions p ON p.matter_id = m.matter_id AND p.user_id = b.user_id
    WHERE m.matter_id IN (${matterIds.join(',')}) AND m.deleted_at IS NULL
      ${userId == null ? '' : `AND b.user_id = ${userId}`}
      AND m.id > COALESCE(p.up_to, 0)
      AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = m.id AND r.user_id = b.user_id)`;
}

// ---------------------------------------------------------------------------
// ports

function listenOn(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(null));
    srv.listen(port, '127.0.0.1', () => resolve(srv));
  });
}

/**
 * n HTTP ports and n cluster ports, all distinct: every port stays bound
 * until all are chosen, so the kernel cannot hand one out twice.
 */
export async function clusterPorts(n) {
  const held = [];
  const ports = [];
  try {
    while (ports.length < 2 * n) {
      const s = await listenOn(0);
      if (!s) throw new Error('no free port on 127.0.0.1');
      held.push(s);
      ports.push(s.address().port);
    }
  } finally {
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
  }
  return { http: ports.slice(0, n), cluster: ports.slice(n) };
}

// ---------------------------------------------------------------------------
// the cluster

/**
 * Starts n nodes on 127.0.0.1 sharing databaseUrl, each told the others'
 * cluster addresses, and waits until every node forwards publishes to every
 * other (a probe published through each node reaches a client on each node).
 * Resolves the started servers (startParley's objects) plus .clusterAddress.
 */
export async function startCluster({ n = 3, databaseUrl, env = {}, meshTimeoutMs = 20000 } = {}) {
  const ports = await clusterPorts(n);
  const addrs = ports.cluster.map((p) => `127.0.0.1:${p}`);
  const started = await Promise.allSettled(addrs.map((addr, i) => startParley({
    port: ports.http[i],
    env: {
      PARLEY_CLUSTER_ADDRESS: addr,
      PARLEY_CLUSTER_PEERS: addrs.filter((a) => a !== addr).join(','),
      ...(databaseUrl ? { DATABASE_URL: databaseUrl } : { PARLEY_CHAT: 'false' }),
      ...env,
    },
  })));
  const nodes = started.filter((r) => r.status === 'fulfilled').map((r) => r.value);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await stopAll(nodes);
    throw failed.reason;
  }
  nodes.forEach((node, i) => { node.clusterAddress = addrs[i]; node.index = i + 1; });
  try {
    await waitForMesh(nodes, meshTimeoutMs);
  } catch (err) {
    await stopAll(nodes);
    throw err;
  }
  return nodes;
}

export async function stopAll(nodes) {
  await Promise.all(nodes.map((node) => node.stop()));
}

/**
 * Readiness of the mesh, not an assertion: a pusher-js client on every node
 * subscribes to a probe channel; every node publishes probes until each client
 * has one from each node. A node refusing a publish (503) is simply asked
 * again. `serverOf(node)` is the node's server from startParley (the node
 * itself by default); a node has `index` and `log()`.
 */
export async function waitForMesh(nodes, ms, serverOf = (node) => node) {
  const ctxs = nodes.map((node) => new Ctx(serverOf(node)));
  const channel = `mesh-probe-${crypto.randomBytes(4).toString('hex')}`;
  try {
    const seen = [];
    for (const [i, ctx] of ctxs.entries()) {
      const p = await ctx.pusher({ name: `probe@${i + 1}` });
      const from = new Set();
      seen.push(from);
      (await subscribed(p, channel)).bind('probe', (d) => from.add(d.from));
    }
    const sdks = ctxs.map((ctx) => ctx.sdk());
    const deadline = Date.now() + ms;
    for (;;) {
      await Promise.all(sdks.map((sdk, i) => sdk.trigger(channel, 'probe', { from: i + 1 }).catch(() => {})));
      const done = await waitFor(() => seen.every((s) => s.size === nodes.length), 300, 'mesh').catch(() => false);
      if (done) return;
      if (Date.now() > deadline) {
        throw new Error(`the ${nodes.length} nodes did not form a cluster within ${ms} ms: `
          + `probes seen per node ${show(seen.map((s) => [...s].sort()))}\n`
          + nodes.map((node) => `--- node ${node.index} ---\n${node.log()}`).join('\n'));
      }
    }
  } finally {
    await Promise.all(ctxs.map((ctx) => ctx.close()));
  }
}

/**
 * Wraps a test body: fn(ctxs, t) with one client context per node
 * (ctxs[0] is node 1). Always closes every client; on failure prints every
 * client's frames and every node's output during the test.
 */
export function clusterScenario(getNodes, fn) {
  return async (t) => {
    const nodes = getNodes(t);
    if (!nodes) return; // skipped
    const ctxs = nodes.map((node) => new Ctx(node));
    const marks = nodes.map((node) => node.mark());
    try {
      await fn(ctxs, t);
    } catch (err) {
      console.error(
        `\n===== FAILED: ${t.name} =====\n${err && err.stack ? err.stack : err}\n`
          + ctxs.map((ctx, i) => `--- clients of node ${i + 1} ---\n${ctx.report()}`).join('\n')
          + '\n'
          + nodes.map((node, i) => `--- node ${i + 1} output during the test ---\n${node.since(marks[i]) || '(none)'}`).join('\n')
          + `\n===== end ${t.name} =====`,
      );
      throw err;
    } finally {
      await Promise.all(ctxs.map((ctx) => ctx.close()));
    }
  };
}

// ---------------------------------------------------------------------------
// chat: admin commands, REST

/** Runs `parley <args>` against databaseUrl; returns its JSON output. */
export function admin(databaseUrl, args) {
  return parleyJSON({ DATABASE_URL: databaseUrl }, args);
}

/** One REST call to a node: chatApi bounded by 10 s (a cluster answers once its peers have). */
export function api(node, method, path, opts = {}) {
  return chatApi(node, method, path, { timeout: 10000, ...opts });
}

export function expectStatus(res, status, what) {
  if (res.status !== status) throw new Error(`${what}: expected ${status}, got ${res.status} ${show(res.body)}`);
  return res.body;
}

export async function login(node, user) {
  const res = await api(node, 'POST', '/api/auth/login', { body: { email: user.email, password: PASSWORD } });
  return expectStatus(res, 200, `login as ${user.email} on node ${node.index}`).token;
}

export async function sendMessage(node, token, matterId, message) {
  const res = await api(node, 'POST', '/api/messages/send', { token, body: { message, client_matter_id: matterId } });
  return expectStatus(res, 201, `send "${message}" on node ${node.index}`).data;
}

export async function unreadCount(node, token) {
  return expectStatus(await api(node, 'GET', '/api/messages/unread-count', { token }), 200, `unread-count on node ${node.index}`);
}

/**
 * Polls an async condition every 100 ms until it returns a truthy value
 * (returned) or `ms` pass (rejects, naming the last value or error seen).
 */
export async function eventually(fn, ms, label) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${label} (last: ${last instanceof Error ? last.message : show(last)})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** GET on the Pusher HTTP API through the server SDK; resolves the JSON body. */
export async function sdkGet(sdk, path, params) {
  const res = await sdk.get({ path, params });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}
