// The devstack the kit's tests run against: wxbridge's real functions on
// moto, the WeChat sandbox as the platform. startDevstack builds it
// (go build ./infra/devstack) and starts it on a free port, or uses the one
// WXB_DEV names (a `make dev` already running).
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

export async function startDevstack() {
  if (process.env.WXB_DEV) {
    return { url: process.env.WXB_DEV, config: await getJSON(process.env.WXB_DEV + '/_dev/config'), stop: async () => {} };
  }
  const dir = await mkdtemp(join(tmpdir(), 'wxbridge-kit-'));
  const bin = join(dir, 'devstack');
  await promisify(execFile)('go', ['build', '-o', bin, './infra/devstack'], { cwd: repo });
  const child = spawn(bin, [], {
    cwd: repo,
    env: { ...process.env, WXB_DEV_ADDR: '127.0.0.1:0', AWS_ENDPOINT_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const kill = () => child.exitCode === null && child.kill('SIGKILL');
  process.on('exit', kill);
  // The devstack logs a JSON line per request: keep the tail for a failure.
  let tail = '';
  const keep = (b) => { tail = (tail + b).slice(-20000); };
  child.stderr.on('data', keep);
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the devstack did not start in 60 s:\n' + tail)), 60_000);
    child.stdout.on('data', (b) => {
      keep(b);
      const ready = /ready in .*: open (http:\/\/\S+)\/_dev\//.exec(tail);
      if (ready) { clearTimeout(timer); resolve(ready[1]); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`the devstack exited (${code}):\n` + tail)); });
  });
  const stop = async () => {
    process.off('exit', kill);
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.on('exit', resolve));
      child.kill('SIGTERM'); // it stops moto, which it started
      const force = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(force);
    }
    await rm(dir, { recursive: true, force: true });
  };
  return { url, config: await getJSON(url + '/_dev/config'), stop, logs: () => tail };
}

export async function getJSON(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return res.json();
}

export async function postJSON(url, body) {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body ?? {}) });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${url}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}
