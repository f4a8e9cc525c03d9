// Several nodes behind a proxy, for the multi-node tests: a real `redis-server` and a
// real nginx (Debian packages) on free loopback ports, each with its own temporary
// directory, stopped by the returned `stop`. Readiness is the port accepting a
// connection (polled: neither server logs a line we could wait on with our flags).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './server.js';

function accepts(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

async function listening(child, port, what, logs, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await accepts(port))) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}):\n${logs.join('')}`);
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port}:\n${logs.join('')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Stops `child` with `signal` (nginx: SIGTERM, so its master takes its workers along). */
function stopper(child, signal = 'SIGKILL') {
  const exited = new Promise((res) => child.on('exit', res));
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
  };
}

/** @returns {Promise<{url: string, stop: () => Promise<void>}>} */
export async function startRedis() {
  const port = await freePort();
  const logs = [];
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (d) => logs.push(d.toString()));
  child.stderr.on('data', (d) => logs.push(d.toString()));
  await listening(child, port, 'redis-server', logs);
  return { url: `redis://127.0.0.1:${port}/`, stop: stopper(child) };
}

/**
 * nginx balancing HTTP and WebSockets over `upstreams` (ports on 127.0.0.1). A request
 * goes to the upstream its `node` cookie hashes to, or to the next one when that one is
 * down; each response names the upstream that served it in `X-Upstream`.
 * @returns {Promise<{url: string, stop: () => Promise<void>, logs: string[]}>}
 */
export async function startNginx(upstreams) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'callsight-nginx-'));
  const servers = upstreams.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=30s;`).join('\n');
  // As root, nginx's workers would drop to \`nobody\`, who cannot use the temporary dir.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  const conf = `daemon off;
${user}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream callsight {
    hash $cookie_node;
${servers}
  }
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://callsight;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 1h;
      proxy_connect_timeout 2s;
      proxy_next_upstream error timeout;
      add_header X-Upstream $upstream_addr always;
    }
  }
}
`;
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const logs = [];
  const child = spawn('nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => logs.push(d.toString()));
  child.stderr.on('data', (d) => logs.push(d.toString()));
  await listening(child, port, 'nginx', logs);
  const stop = stopper(child, 'SIGTERM');
  return {
    url: `http://127.0.0.1:${port}`,
    logs,
    stop: async () => {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A `node` cookie value that nginx (`startNginx`) sends to upstream port `port`: found by
 * asking through the proxy and reading `X-Upstream`.
 */
export async function cookieFor(proxyUrl, port) {
  for (let i = 0; i < 200; i += 1) {
    const value = `n${i}`;
    const res = await fetch(`${proxyUrl}/healthz`, { headers: { cookie: `node=${value}` } });
    await res.arrayBuffer();
    if ((res.headers.get('x-upstream') ?? '').endsWith(`:${port}`)) return value;
  }
  throw new Error(`no cookie value reaches upstream ${port}`);
}
