// Test hosts in network namespaces (`ip netns`, veth; needs root): each host reaches the
// machine's own address on its link, and nothing else — two hosts cannot reach each
// other. Set up and torn down by the test.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHROMIUM } from './browser.js';

function ip(...args) {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Whether this process may create network namespaces (root, `ip` present). */
export function netnsAvailable() {
  try {
    const name = `csprobe${process.pid % 100000}`;
    ip('netns', 'add', name);
    ip('netns', 'del', name);
    return true;
  } catch {
    return false;
  }
}

/**
 * `count` isolated hosts. Host i gets 10.N.i.2/24 on a veth whose other end (10.N.i.1)
 * stays in the root namespace; no default route, so hosts reach only their own link.
 * Returns {hosts: [{ns, address, gateway, chromium}], remove()}; `chromium` is a wrapper
 * that runs Chromium inside the namespace.
 */
export function isolatedHosts(count) {
  const tag = process.pid % 10000;
  const net = 100 + (process.pid % 150); // 10.N.0.0/16, N from the pid: parallel runs differ
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'callsight-netns-'));
  const hosts = [];
  const remove = () => {
    for (const h of hosts) {
      try {
        ip('netns', 'del', h.ns); // takes its veth pair along
      } catch {
        // already gone
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 1; i <= count; i++) {
      const ns = `cs${tag}h${i}`;
      const outside = `cs${tag}o${i}`;
      const inside = `cs${tag}i${i}`;
      const gateway = `10.${net}.${i}.1`;
      const address = `10.${net}.${i}.2`;
      ip('netns', 'add', ns);
      hosts.push({ ns, address, gateway });
      ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
      ip('link', 'set', inside, 'netns', ns);
      ip('addr', 'add', `${gateway}/24`, 'dev', outside);
      ip('link', 'set', outside, 'up');
      ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${address}/24`, 'dev', inside);
      ip('netns', 'exec', ns, 'ip', 'link', 'set', inside, 'up');
      ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
      const wrapper = path.join(dir, `chromium-${ns}`);
      fs.writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ns} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
      hosts[hosts.length - 1].chromium = wrapper;
    }
  } catch (err) {
    remove();
    throw err;
  }
  return { hosts, remove };
}
