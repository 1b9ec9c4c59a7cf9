// Node under systemd's sandbox in a real Dom0: which options xen-pmemd's surroundings (V8's JIT,
// koffi, libxencall, a pmem disk, sysfs, /proc/xen, udev events) survive. The default pass runs
// the cases that decide the unit's hardening; LAB_HARDENING_FULL=1 runs every option on its own.
// XEN_PMEM_LAB_UPDATE_FIXTURES=1 writes the result to test/fixtures/captured/hardening.json.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { MiB } from '../../src/core/units.js';
import type { CaseResult } from '../../lab/guest/hardening-matrix.js';
import { UNIT_CASE } from '../../lab/guest/hardening-matrix.js';
import { repositoryDir } from '../../lab/prepare.js';
import { withLab } from '../../lab/vm.js';
import { labAvailability } from './lab-available.js';

interface Matrix {
  complete: boolean;
  node: string;
  results: CaseResult[];
}

test('lab hardening: node, koffi, libxencall and node-udev under systemd sandbox options', { timeout: 600_000 }, async (t) => {
  const availability = await labAvailability();
  if ('skip' in availability) {
    t.skip(availability.skip);
    return;
  }
  const images = await mkdtemp(join(tmpdir(), 'xen-pmem-lab-images-'));
  const full = process.env.LAB_HARDENING_FULL === '1';
  let matrix: Matrix;
  try {
    matrix = await withLab({
      artifacts: availability.artifacts,
      nvdimms: [{ id: 'nv0', imagePath: join(images, 'nv0.img'), sizeBytes: 256n * MiB }],
      scenario: 'hardening',
      env: full ? { LAB_HARDENING_FULL: '1' } : {},
      timeoutMs: full ? 600_000 : 360_000,
    }, async (lab) => {
      await lab.waitForFile('done');
      const status = (await lab.readResult('exit-status')).trim();
      assert.equal(status, '0', `the guest scenario failed (exit ${status}):\n${await lab.readResult('scenario.log')}`);
      return lab.readJson<Matrix>('hardening.json');
    });
  } finally {
    await rm(images, { recursive: true, force: true });
  }
  if (process.env.XEN_PMEM_LAB_UPDATE_FIXTURES === '1') {
    const file = join(repositoryDir(), 'test', 'fixtures', 'captured', 'hardening.json');
    await writeFile(file, JSON.stringify(matrix, null, 2) + '\n');
    t.diagnostic(`wrote ${file}`);
  }
  for (const result of matrix.results) {
    const died = result.diedDuring ? ` (died during ${result.diedDuring})` : '';
    t.diagnostic(`${result.failed.length ? 'breaks ' + result.failed.join(', ') + died : 'ok'}: ${result.name} (${result.durationMs} ms)`);
  }
  const byName = new Map(matrix.results.map((result) => [result.name, result]));
  const get = (name: string): CaseResult => {
    const result = byName.get(name);
    assert.ok(result, `the matrix has no case "${name}" (has: ${[...byName.keys()].join('; ')})`);
    return result;
  };

  await t.test('without a sandbox every check passes (the probe itself works)', () => {
    assert.deepEqual(get('baseline').failed, [], JSON.stringify(get('baseline').checks));
  });

  await t.test('MemoryDenyWriteExecute=yes kills node while it compiles hot code', () => {
    const mdwe = get('MemoryDenyWriteExecute=yes');
    assert.deepEqual(mdwe.failed, ['node']);
    assert.equal(mdwe.diedDuring, 'jit');
  });

  await t.test('PrivateNetwork=yes leaves node-udev without events', () => {
    assert.deepEqual(get('PrivateNetwork=yes').failed, ['udev']);
  });

  await t.test("the unit's sandbox keeps JIT, koffi, hypercalls, pmem reads, sysfs and udev working", () => {
    const unit = get(UNIT_CASE);
    assert.ok(!unit.failed.includes('node'), `node died in the unit's sandbox during ${unit.diedDuring}: ${unit.stderrTail}`);
    for (const check of ['jit', 'koffi', 'hypercall', 'pmemRead', 'sysfs', 'udev']) {
      assert.equal(unit.checks[check]?.ok, true, `${check}: ${unit.checks[check]?.detail}`);
    }
  });

  await t.test('binding /proc/xen into the private /proc makes the unit\'s sandbox pass every check', () => {
    const fixed = get(`${UNIT_CASE} + BindReadOnlyPaths=/proc/xen`);
    assert.deepEqual(fixed.failed, [], JSON.stringify(fixed.checks));
  });
});
