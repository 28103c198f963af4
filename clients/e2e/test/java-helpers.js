// What the Java tests share: where the JDK and the jars are, compiling with
// javac, and running a Java program that prints one JSON object per line
// (java-sdk.test.js drives the bare Pusher Java SDK, android.test.js the
// Android client in clients/android).
//
// Needs a JDK (javac, java), the official SDK's jars in the folder given by
// PARLEY_JAVA_SDK (default: the shared sdk/java folder beside the repository)
// and Debian's libgoogle-gson-java and libslf4j-java. Without them the tests
// are skipped with a message, except under CI where they fail.
import { execFile, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';

import { E2E_DIR, show, within } from './helpers.js';

export const UNDER_CI = Boolean(process.env.CI) && process.env.CI !== 'false';
export const REPO_ROOT = path.resolve(E2E_DIR, '..', '..');
export const SDK_DIR = process.env.PARLEY_JAVA_SDK
  ? path.resolve(process.env.PARLEY_JAVA_SDK)
  : path.resolve(REPO_ROOT, '..', 'shared', 'sdk', 'java');
const SYSTEM_JARS = '/usr/share/java';
export const JARS = [
  path.join(SDK_DIR, 'pusher-java-client.jar'),
  path.join(SDK_DIR, 'Java-WebSocket.jar'),
  path.join(SYSTEM_JARS, 'gson.jar'), // Debian: libgoogle-gson-java
  path.join(SYSTEM_JARS, 'slf4j-api.jar'), // Debian: libslf4j-java
  path.join(SYSTEM_JARS, 'slf4j-nop.jar'),
];

const execFileP = promisify(execFile);

function onPath(cmd) {
  const dirs = [];
  if (process.env.JAVA_HOME) dirs.push(path.join(process.env.JAVA_HOME, 'bin'));
  dirs.push(...(process.env.PATH || '').split(path.delimiter).filter(Boolean));
  for (const d of dirs) {
    const p = path.join(d, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

export const JAVAC = onPath('javac');
export const JAVA = onPath('java');
export const MISSING = [
  ...(JAVAC ? [] : ['javac (Debian: default-jdk-headless)']),
  ...(JAVA ? [] : ['java (Debian: default-jdk-headless)']),
  ...JARS.filter((j) => !fs.existsSync(j)),
];
export const MISSING_MSG = `the Java tests need: ${MISSING.join(', ')} `
  + '(SDK jars: set PARLEY_JAVA_SDK to their folder; Debian jars: apt-get install -y libgoogle-gson-java libslf4j-java)';
/** The `skip` option of a Java test: a reason locally when something is missing, false under CI (the test fails). */
export const SKIP = MISSING.length && !UNDER_CI ? `${MISSING_MSG}; under CI this test fails instead` : false;

/** Throws the reason a Java test cannot run (under CI, where it is not skipped). */
export function requireJava() {
  if (MISSING.length) throw new Error(`CI: ${MISSING_MSG}`);
}

/**
 * Compiles `sources` into a fresh temp dir against the SDK jars; resolves the dir.
 * `release` is javac's --release (e.g. 8 for code Android must accept).
 */
export async function compileJava(sources, { release } = {}) {
  const classDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-java-'));
  const args = ['-nowarn', '-encoding', 'UTF-8', ...(release ? ['--release', String(release)] : []),
    '-cp', JARS.join(path.delimiter), '-d', classDir, ...sources];
  try {
    await execFileP(JAVAC, args, { timeout: 120000 });
  } catch (err) {
    fs.rmSync(classDir, { recursive: true, force: true });
    throw new Error(`javac ${sources.join(' ')} failed: ${err.message}\n${err.stdout || ''}${err.stderr || ''}`);
  }
  return classDir;
}

/** Every .java file under `dir`, sorted. */
export function javaSources(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.java')) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** The Android client's sources (clients/android) and the class of its test driver. */
export const ANDROID_SRC = path.join(REPO_ROOT, 'clients', 'android', 'src');
export const ANDROID_DRIVER = 'chat.parley.realtime.RealtimeChatDriver';

/**
 * Compiles the Android client as Android accepts it (javac --release 8); resolves
 * { classDir }, or { compileError } when javac failed (a test throws it, so it fails
 * rather than the hook).
 */
export async function compileAndroid() {
  try {
    return { classDir: await compileJava(javaSources(ANDROID_SRC), { release: 8 }), compileError: null };
  } catch (err) {
    return { classDir: null, compileError: err };
  }
}

/**
 * Runs `mainClass` from `classDir` (plus the jars). Every JSON line it prints is
 * kept in `lines` and can be awaited with `expect`; `send(obj)` writes one JSON
 * line to its stdin.
 */
export function runJava(classDir, mainClass, args = []) {
  const cp = [classDir, ...JARS].join(path.delimiter);
  const child = spawn(JAVA, ['-cp', cp, mainClass, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const events = new EventEmitter();
  events.setMaxListeners(100);
  const lines = [];
  let stderr = '';
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      events.emit('exit', exitInfo);
      resolve(exitInfo);
    });
    child.on('error', (err) => {
      exitInfo = { code: null, signal: null, error: String(err) };
      events.emit('exit', exitInfo);
      resolve(exitInfo);
    });
  });
  child.stdin.on('error', () => {}); // the JVM may be gone already
  child.stderr.on('data', (c) => {
    if (stderr.length < 65536) stderr += c.toString('utf8');
  });
  readline.createInterface({ input: child.stdout }).on('line', (text) => {
    let obj;
    try {
      obj = JSON.parse(text);
    } catch {
      obj = { type: 'unparsable', text };
    }
    lines.push(obj);
    events.emit('line', obj);
  });

  return {
    lines,
    get exitInfo() {
      return exitInfo;
    },
    report: () => `${lines.map((l) => `    ${show(l)}`).join('\n')}\n  exit=${show(exitInfo)}\n  stderr:\n${stderr}`,
    /** Writes one command line to the program's stdin. */
    send(obj) {
      if (!exitInfo) child.stdin.write(`${typeof obj === 'string' ? obj : JSON.stringify(obj)}\n`);
    },
    /**
     * Resolves with the first line (seen already or to come) matching `pred`;
     * rejects when a line matches `failIf`, the JVM exits, or after `ms`.
     */
    expect(pred, ms, label, failIf = () => false) {
      return new Promise((resolve, reject) => {
        const done = (fn, arg) => {
          clearTimeout(timer);
          events.off('line', onLine);
          events.off('exit', onExit);
          fn(arg);
        };
        const onLine = (l) => {
          if (pred(l)) done(resolve, l);
          else if (failIf(l)) done(reject, new Error(`Java: ${label}: got ${show(l)} instead`));
        };
        const onExit = (e) => done(reject, new Error(`Java exited (${show(e)}) before ${label}`));
        const timer = setTimeout(() => done(reject, new Error(`Java: timed out after ${ms} ms waiting for ${label}`)), ms);
        events.on('line', onLine);
        events.on('exit', onExit);
        for (const l of lines) {
          if (pred(l)) return done(resolve, l);
          if (failIf(l)) return done(reject, new Error(`Java: ${label}: got ${show(l)} instead`));
        }
        if (exitInfo) onExit(exitInfo);
      });
    },
    /** Asks the program to exit ("quit" line, then EOF); kills it if it has not within `ms`. */
    async quit(ms = 10000, quitLine = 'quit') {
      if (!exitInfo) {
        child.stdin.end(`${quitLine}\n`);
        if (!await within(exited, ms)) {
          child.kill('SIGKILL');
          await within(exited, 5000);
          return { ...(exitInfo || {}), killed: true };
        }
      }
      return exitInfo;
    },
  };
}

/**
 * Commands to a driver run by runJava that answers each command carrying a `req` id with a line
 * { type: 'result', req, ok, value } (RealtimeChatDriver). `getJava` gives the running program;
 * ids are `prefix`1, `prefix`2, ... request() sends one and gives { req, result(ms = 30000) };
 * call() awaits its result; value() requires ok and resolves the value.
 */
export function driverRequests(getJava, prefix) {
  let seq = 0;
  const request = (client, cmd, args = {}) => {
    const java = getJava();
    const req = `${prefix}${++seq}`;
    java.send({ cmd, client, req, ...args });
    return { req, result: (ms = 30000) => java.expect((l) => l.type === 'result' && l.req === req, ms, `${client} ${cmd} (${req})`) };
  };
  const call = (client, cmd, args) => request(client, cmd, args).result();
  const value = async (client, cmd, args) => {
    const r = await call(client, cmd, args);
    assert.equal(r.ok, true, `${client} ${cmd}: ${show(r)}`);
    return r.value;
  };
  return { request, call, value };
}
