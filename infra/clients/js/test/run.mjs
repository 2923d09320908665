// npm test: one devstack for every test file. node --test runs each file
// in a process of its own, so the devstack is started here, once, and the
// files find it in WXB_DEV (as they find a `make dev` already running).
// They run one at a time: the sandbox's faults are the whole platform's.
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { startDevstack } from './devstack.mjs';

const dir = dirname(fileURLToPath(import.meta.url));
const files = (await readdir(dir)).filter((f) => f.endsWith('.test.mjs')).sort().map((f) => join(dir, f));

const stack = await startDevstack();
const code = await new Promise((resolve) => {
  const child = spawn(process.execPath, ['--test', '--test-reporter=spec', '--test-concurrency=1', ...files], {
    env: { ...process.env, WXB_DEV: stack.url },
    stdio: 'inherit',
  });
  child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
});
if (code !== 0 && stack.logs) console.error('the devstack\'s last lines:\n' + stack.logs().slice(-4000));
await stack.stop();
process.exit(code);
