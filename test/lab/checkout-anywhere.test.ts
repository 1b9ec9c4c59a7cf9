// The README's main job from a checkout under /tmp, where the guest mounts a tmpfs of its own:
// a copy of this working tree (built, node_modules included, .git left out) runs `npm run demo`'s
// program, which boots the patched Xen, installs xen-pmem from that checkout in the Dom0, and
// reports two NVDIMMs. A lab that hid the checkout failed here at once (cp: can't stat
// '/newroot/tmp/x/lab/guest/systemd/*').

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';

import { repositoryDir } from '../../lab/prepare.js';
import { labAvailability } from './lab-available.js';

test('npm run demo from a checkout under /tmp: the guest sees it, installs from it, and both NVDIMMs are reported', { timeout: 1_200_000 }, async (t) => {
  const availability = await labAvailability();
  if ('skip' in availability) {
    t.skip(availability.skip);
    return;
  }
  const base = mkdtempSync('/tmp/xen-pmem-checkout-');
  const checkout = join(base, 'x');
  try {
    const source = repositoryDir();
    cpSync(source, checkout, { recursive: true, filter: (path) => !relative(source, path).split('/').includes('.git') });
    const started = Date.now();
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [join(checkout, 'dist', 'lab', 'demo.js')], { cwd: checkout, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    t.diagnostic(`the demo from ${checkout} took ${((Date.now() - started) / 1000).toFixed(0)} s`);
    assert.equal(run.code, 0, `the demo failed:\n${run.stdout.slice(-3000)}\n--- stderr ---\n${run.stderr.slice(-3000)}`);
    assert.ok(run.stdout.includes(`from the checkout\n  ${checkout} `), 'the demo ran from the checkout under /tmp');
    const summary = run.stdout.slice(run.stdout.indexOf('In short'));
    assert.equal((summary.match(/reported \(reported\)\s+added/g) ?? []).length, 2, summary);
    assert.match(summary, /absent \(no-superblock\)\s+nothing/);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
