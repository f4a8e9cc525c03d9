// Starts the real `callsight` binary on 127.0.0.1 with a free port and waits for its
// "listening on" log line (an event, not a sleep).
import { spawn } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export function serverBinary() {
  if (process.env.CALLSIGHT_BIN) return process.env.CALLSIGHT_BIN;
  const target = process.env.CARGO_TARGET_DIR || '/root/.cache/callsight-target';
  return path.join(target, 'debug', 'callsight');
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

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * @param {object} [o]
 * @param {string[]} [o.args] extra flags
 * @param {number} [o.port] fixed port (e.g. to restart on the same address)
 * @param {number} [o.timeoutMs]
 * @param {string} [o.host] the address to bind (default 127.0.0.1)
 * @returns {Promise<{url: string, port: number, logs: string[], stop: () => Promise<void>, exited: Promise<number|null>}>}
 */
export async function startServer({ args = [], port, timeoutMs = 30_000, env = {}, host = '127.0.0.1' } = {}) {
  const bin = serverBinary();
  if (!fs.existsSync(bin)) {
    throw new Error(`server binary not found at ${bin}: build it with \`cargo build -p callsight-server\` or set CALLSIGHT_BIN`);
  }
  const p = port ?? (await freePort());
  const argv = ['--bind', `${host}:${p}`, '--stun-port', '0', ...args];
  const child = spawn(bin, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { RUST_LOG: 'info', ...process.env, NO_COLOR: '1', ...env },
  });
  const logs = [];
  let resolveUrl;
  let rejectUrl;
  const urlPromise = new Promise((res, rej) => {
    resolveUrl = res;
    rejectUrl = rej;
  });
  const onData = (chunk) => {
    for (const raw of chunk.toString('utf8').split('\n')) {
      const line = raw.replace(ANSI, '');
      if (!line) continue;
      logs.push(line);
      if (process.env.E2E_SERVER_LOGS) process.stderr.write(`[server:${p}] ${line}\n`);
      const m = /listening on (https?:\/\/[^\s,]+)/.exec(line);
      if (m) resolveUrl(m[1].replace(/\/$/, ''));
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise((res) => child.on('exit', (code) => res(code)));
  exited.then((code) => rejectUrl(new Error(`server exited (code ${code}) before listening:\n${logs.join('\n')}`)));
  child.on('error', (err) => rejectUrl(err));
  const timer = setTimeout(
    () => rejectUrl(new Error(`server did not log "listening on" within ${timeoutMs} ms:\n${logs.join('\n')}`)),
    timeoutMs,
  );
  let url;
  try {
    url = await urlPromise;
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
  };
  return { url, port: p, logs, stop, exited, child };
}
