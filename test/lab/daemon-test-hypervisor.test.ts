// End-to-end scenarios e, f and the exactly-once half of d in one boot of the lab's Xen Dom0, with
// the test hypervisor (test/hypervisor/test-xencall.c, a libxencall stand-in that implements the
// RFC's XENPF_pmem_add) answering for Xen, whose upstream releases have no pmem support. Around
// it everything is real: systemd, udev, journald, the installed unit and its sandbox.
//
// NVDIMMs at boot: nv0 prepared on the host, nv1 blank. Hotplugged: nv2, 512 MiB with a label
// area, which the guest turns into an fsdax namespace and sets up.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { KiB, MiB } from '../../src/core/units.js';
import {
  TEST_XEN_RESULT_FILE, addsFor, daemonEntries, expectedLayout, field, journalFieldsOf, outcomeEntries,
  type DiskFacts, type JournalEntry, type StatusDevice, type StatusJson, type SuperblockOffsets, type TestXenScenarioResult,
} from '../../lab/guest/daemon-results.js';
import { blankImage, nvdimmPlacement, preparedImage, type PlacedNvdimm } from '../../lab/nvdimm-images.js';
import { readRun, waitForMarkerOrEnd, type ScenarioRun } from '../../lab/scenario-run.js';
import { withLab } from '../../lab/vm.js';
import { buildTestHypervisor } from '../hypervisor/build.js';
import { labAvailability } from './lab-available.js';
import { assertFields, guestFailure } from './scenario-asserts.js';

const SIZE = 256n * MiB;
const FSDAX_SIZE = 512n * MiB;
const LABEL_BYTES = 128n * KiB;

interface Collected extends ScenarioRun<TestXenScenarioResult> {
  placement: PlacedNvdimm[];
}

test('lab scenarios with the test hypervisor: success path, kill -9 after a report, fsdax', { timeout: 900_000 }, async (t) => {
  const availability = await labAvailability();
  if ('skip' in availability) {
    t.skip(availability.skip);
    return;
  }
  // The guest copies the library out of dist/ (the unit cannot load anything under /root or /home).
  buildTestHypervisor();
  const images = await mkdtemp(join(tmpdir(), 'xen-pmem-lab-images-'));
  const image = (id: string) => join(images, `${id}.img`);
  const startedAt = Date.now();
  let prepared: SuperblockOffsets;
  let collected: Collected;
  try {
    prepared = preparedImage(image('nv0'), SIZE);
    blankImage(image('nv1'), SIZE);
    collected = await withLab({
      artifacts: availability.artifacts,
      nvdimms: ['nv0', 'nv1'].map((id) => ({ id, imagePath: image(id), sizeBytes: SIZE })),
      scenario: 'daemon-test-xen',
      env: { LAB_BOOT_DISKS: '2' },
      timeoutMs: 600_000,
    }, async (lab) => {
      if (await waitForMarkerOrEnd(lab, 'hotplug-fsdax')) {
        await lab.hotplugNvdimm({ id: 'nv2', imagePath: image('nv2'), sizeBytes: FSDAX_SIZE, labelSizeBytes: LABEL_BYTES });
      }
      await lab.waitForFile('done');
      const placement = await nvdimmPlacement(lab.qmp);
      return { ...(await readRun<TestXenScenarioResult>(lab, TEST_XEN_RESULT_FILE)), placement };
    });
  } finally {
    await rm(images, { recursive: true, force: true });
  }
  t.diagnostic(`whole run ${((Date.now() - startedAt) / 1000).toFixed(1)} s; guest phases: ${collected.result?.phase ?? 'none'}`);
  const got = collected.result ?? ({ phase: 'no result' } as TestXenScenarioResult);

  const placed = (id: string): PlacedNvdimm => {
    const nvdimm = collected.placement.find((entry) => entry.id === id);
    assert.ok(nvdimm, `QEMU does not list NVDIMM ${id}`);
    return nvdimm;
  };
  /** The boot disk that QEMU's NVDIMM `id` became: its namespace starts where QEMU put the DIMM. */
  const bootDisk = (id: string): DiskFacts => {
    const address = BigInt(placed(id).address);
    const disk = (got.bootDisks ?? []).find((facts) => BigInt(facts.namespaceResource) === address);
    assert.ok(disk, `no pmem disk starts at ${placed(id).address}, where QEMU put ${id}`);
    return disk;
  };
  const statusOf = (status: StatusJson | undefined, disk: string): StatusDevice => {
    const device = status?.devices.find((entry) => entry.device === disk);
    assert.ok(device, `xen-pmem status --json has no ${disk} (has: ${status?.devices.map((d) => d.device).join(' ') ?? 'no status'})`);
    return device;
  };

  await t.test('the guest scenario ran to its end', () => {
    assert.equal(collected.exitStatus, '0', guestFailure(collected));
    assert.equal(got.phase, 'done', guestFailure(collected));
  });

  await t.test('e. success path: reported with the PFNs in the journal, journalctl PMEM_DEVICE= filters, status shows it, READY=1 after coldplug', () => {
    const success = got.success;
    const install = got.install;
    assert.ok(install && success, `no install or success result (guest stopped in phase ${got.phase})`);
    assert.equal(install.enable.status, 0, install.enable.stderr);
    assert.deepEqual([install.unitAfterEnable.properties.ActiveState, install.unitAfterEnable.properties.UnitFileState], ['active', 'enabled']);

    const facts = bootDisk('nv0');
    const expected = expectedLayout(facts, prepared);
    const [line, ...more] = outcomeEntries(success.journal, facts.disk);
    assert.ok(line, `no journal line for ${facts.disk}`);
    assert.equal(more.length, 0, `${facts.disk} was decided more than once`);
    assert.deepEqual([field(line, 'PMEM_STATE'), field(line, 'PMEM_REASON'), field(line, 'PRIORITY')], ['reported', 'reported', '5']);
    assertFields(line, journalFieldsOf(expected));
    assert.match(field(line, 'MESSAGE') ?? '', /reported region 0x[0-9a-f]+-0x[0-9a-f]+ \(reserved .*, data .*\) to Xen/);

    // The filter is real: each device's query holds only its own lines, and both have some.
    const blank = bootDisk('nv1');
    for (const disk of [facts.disk, blank.disk]) {
      const filtered: JournalEntry[] = success.perDevice[disk] ?? [];
      assert.ok(filtered.length > 0, `journalctl -u xen-pmemd PMEM_DEVICE=${disk} found nothing`);
      assert.deepEqual([...new Set(filtered.map((entry) => field(entry, 'PMEM_DEVICE')))], [disk]);
      assert.equal(filtered.length, daemonEntries(success.journal, disk).length, `PMEM_DEVICE=${disk} returns every line about ${disk}`);
    }
    assert.deepEqual(outcomeEntries(success.perDevice[blank.disk] ?? [], blank.disk).map((entry) => field(entry, 'PMEM_STATE')), ['absent']);

    const device = statusOf(success.status, facts.disk);
    assert.deepEqual([device.state, device.reason], ['reported', 'reported']);
    assert.deepEqual(
      [device.layout?.region.start, device.layout?.region.size, device.layout?.reserved.start, device.layout?.data.start, device.layout?.data.size],
      [expected.regionStart, Number(BigInt(expected.regionSize)), expected.reservedStart, expected.dataStart, Number(BigInt(expected.dataSize))],
    );
    assert.equal(success.status.daemon.capability?.kind, 'pmem-add');

    // Type=notify: systemd logs "Started" when READY=1 arrives; every device was decided before.
    const started = success.journal.find((entry) => /^Started xen-pmemd\.service/.test(field(entry, 'MESSAGE') ?? ''));
    assert.ok(started, 'systemd never logged the unit as started');
    for (const disk of [facts.disk, blank.disk]) {
      const [decided] = outcomeEntries(success.journal, disk);
      assert.ok(decided && Number(field(decided, '__MONOTONIC_TIMESTAMP')) < Number(field(started, '__MONOTONIC_TIMESTAMP')),
        `${disk} was not decided before READY=1`);
    }
    assert.match(success.unit.properties.StatusText ?? '', /1 reported/);
    assert.match(success.unit.properties.StatusText ?? '', /1 absent/);
    assert.equal(addsFor(success.hypervisorLog, expected.spfn).length, 1, success.hypervisorLog.join('\n'));
    assert.match(addsFor(success.hypervisorLog, expected.spfn)[0]!, / ret=0 OK /);
  });

  await t.test('d. kill -9 after a report: systemd restarts the daemon, the region is not reported again, status is still right', () => {
    const kill = got.kill;
    assert.ok(kill, `no kill result (guest stopped in phase ${got.phase})`);
    const after = kill.after;
    assert.notEqual(after.unit.properties.MainPID, kill.before.properties.MainPID);
    assert.ok(Number(after.unit.properties.NRestarts) >= 1, `NRestarts ${after.unit.properties.NRestarts}`);
    const facts = bootDisk('nv0');
    const expected = expectedLayout(facts, prepared);
    // One add in the test hypervisor's log, before and after the restart: no second add, not even a confirming one.
    const adds = addsFor(after.hypervisorLog, expected.spfn);
    assert.equal(adds.length, 1, `the region was sent ${adds.length} times:\n${adds.join('\n')}`);
    const reportedLines = after.ledger.filter((line) => line.includes('"op":"reported"') && line.includes(`"spfn":"${expected.spfn}"`));
    assert.equal(reportedLines.length, 1, `ledger:\n${after.ledger.join('\n')}`);
    assert.ok(!after.ledger.some((line) => line.includes('"op":"pending"') && line.includes(`"spfn":"${expected.spfn}"`)), 'no add is left pending');
    assert.equal(after.statusExit, 0);
    assert.equal(after.status.daemon.running, true);
    assert.equal(String(after.status.daemon.pid), after.unit.properties.MainPID);
    const device = statusOf(after.status, facts.disk);
    assert.deepEqual([device.state, device.layout?.region.start, device.layout?.pfns.spfn], ['reported', expected.regionStart, expected.spfn]);
    assert.ok(['reported', 'reported-earlier'].includes(device.reason), device.reason);
  });

  await t.test('f. fsdax namespace set up in the Dom0: the physical mapping comes from the pfn device and is reported', () => {
    const fsdax = got.fsdax;
    assert.ok(fsdax, `no fsdax result (guest stopped in phase ${got.phase})`);
    const create = fsdax.ndctl.find((record) => record.command.includes('create-namespace'));
    assert.equal(create?.status, 0, create?.stderr);
    assert.match(create?.command ?? '', /--mode=fsdax --map=mem/);
    const facts = fsdax.facts;
    assert.match(facts.parent, /^pfn\d+\.\d+$/, `${facts.disk} sits on ${facts.parent}, not on a pfn device`);
    assert.ok(facts.pfnResource && facts.pfnSize, 'the pfn device has no resource or size');
    assert.equal(BigInt(facts.namespaceResource), BigInt(placed('nv2').address), 'the namespace starts where QEMU put nv2');
    assert.ok(BigInt(facts.pfnResource) > BigInt(facts.namespaceResource), 'the pfn data starts inside the namespace, after its info block');
    assert.equal(BigInt(facts.sectors) * 512n, BigInt(facts.pfnSize), 'the disk is exactly the pfn data range');

    const inspected = fsdax.inspect as { status: string; superblock: SuperblockOffsets };
    assert.equal(inspected.status, 'valid');
    const expected = expectedLayout(facts, inspected.superblock);
    const device = statusOf(fsdax.status, fsdax.disk);
    assert.deepEqual([device.state, device.reason, device.mode], ['reported', 'reported', 'fsdax']);
    assert.deepEqual(
      [device.layout?.region.start, device.layout?.region.size, device.layout?.reserved.start, device.layout?.data.start],
      [expected.regionStart, Number(BigInt(facts.pfnSize)), expected.reservedStart, expected.dataStart],
    );
    const reported = outcomeEntries(fsdax.journal, fsdax.disk, 'reported');
    assert.equal(reported.length, 1, 'one report for the fsdax disk');
    assertFields(reported[0]!, journalFieldsOf(expected));
    const adds = addsFor(fsdax.hypervisorLog, expected.spfn);
    assert.equal(adds.length, 1, fsdax.hypervisorLog.join('\n'));
    assert.match(adds[0]!, / ret=0 OK /);
    // ndctl's size-0 seed namespaces come and go with events of their own; they are not devices.
    const phantoms = fsdax.status.devices.filter((entry) => !/^pmem\d+$/.test(entry.device));
    assert.deepEqual(phantoms.map((entry) => `${entry.device} ${entry.state}`), [], 'status shows only the pmem disks there were');
  });
});
