// dist/ is committed so that Go embeds the kit and nobody needs npm to
// build: it must be exactly what tsc makes of src/, and the kit's version
// the one package.json and README state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { VERSION } from '../dist/wxbridge.js';

const kit = join(dirname(fileURLToPath(import.meta.url)), '..');

test('dist is what tsc compiles from src (run npm run build in infra/clients/js)', async () => {
  const out = await mkdtemp(join(tmpdir(), 'wxbridge-kit-dist-'));
  try {
    await promisify(execFile)(join(kit, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json', '--outDir', out], { cwd: kit })
      .catch((e) => assert.fail(`tsc failed:\n${e.stdout}${e.stderr}`));
    const built = (await readdir(out)).sort();
    assert.deepEqual((await readdir(join(kit, 'dist'))).sort(), built);
    for (const f of built) {
      assert.ok((await readFile(join(out, f))).equals(await readFile(join(kit, 'dist', f))), `dist/${f} is stale: npm run build`);
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

test('the kit has one version: VERSION, package.json and README', async () => {
  const pkg = JSON.parse(await readFile(join(kit, 'package.json'), 'utf8'));
  const readme = await readFile(join(kit, '..', '..', '..', 'README.md'), 'utf8');
  const stated = /The kit is\s+version\s+`([^`]+)`/.exec(readme);
  assert.ok(stated, 'README states "The kit is version `x.y.z`" in its client kit section');
  assert.equal(pkg.version, VERSION);
  assert.equal(stated[1], VERSION);
});
