// End-to-end scenarios a–e on the patched hypervisor (hypervisor/, built by lab/hypervisor.ts),
// which implements XENPF_pmem (platform op 67): real Xen, real udev, systemd and journald,
// xen-pmem installed the way the README says. What the daemon says (journal, status, ledger) is
// held against what Xen says on its console (one `pmem: added` or `pmem: refused` line per add,
// read from the serial log) and against what the host finds in the image files after the boot.
//
// NVDIMMs at boot: nv0 prepared on the host with an ext4 file system on its data partition, nv1
// blank. Hotplugged: nv2 prepared (b); `older` with the reserved area xen-pmem 0.1.0's planner
// made (44 bytes a page rounded to 2 MiB) and `current` with this planner's, each placed by
// address across a 256 MiB pdx group and a 1 GiB M2P slot boundary (d). Then kill -9 with the
// ledger deleted (c), and nv4 labelled and set up as fsdax in the Dom0, which the daemon must
// reject in a PV Dom0 without unbinding it (docs/hypervisor.md, Known limits). The Dom0 is the lab's default,
// Debian 13, on the newest base the series can be built on here (lab/hypervisor.ts: 4.20 when
// its source is at hand, else 4.17; docs/lab.md).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { GiB, hex, KiB, MiB } from '../../src/core/units.js';
import { plannedReservedBytes } from '../../src/core/xen-sizing.js';
import {
  expectedLayout, field, hotplugOrder, journalFieldsOf, outcomeEntries, PATCHED_XEN_RESULT_FILE,
  type DiskFacts, type ExpectedLayout, type PatchedXenScenarioResult, type StatusDevice, type StatusJson, type SuperblockOffsets,
} from '../../lab/guest/daemon-results.js';
import { prepareNewestPatchedXen } from '../../lab/hypervisor.js';
import {
  blankImage, filesystemOnData, layoutChecksums, nvdimmPlacement, perPageReservedBytes, preparedImage, readImageBytes, shrunkReservedImage, type PlacedNvdimm,
} from '../../lab/nvdimm-images.js';
import { stderrProgress } from '../../lab/progress.js';
import { readRun, waitForMarkerOrEnd, type ScenarioRun } from '../../lab/scenario-run.js';
import { describePhaseTimes, phaseTimes } from '../../lab/timeline.js';
import { withLab } from '../../lab/vm.js';
import { parseXenPmemLines, type XenPmemLine } from '../../lab/xen-console.js';
import { CHUNK_PAGES, regionPageInfoProblems } from '../../lab/xen-tables.js';
import { labAvailability } from './lab-available.js';
import { assertFields, guestFailure } from './scenario-asserts.js';

const SIZE = 256n * MiB;
const FSDAX_SIZE = 512n * MiB;
/** Across a pdx group and an M2P slot boundary, each in slots no other NVDIMM touches. */
const OLDER_AT = 8n * GiB - 128n * MiB;
const CURRENT_AT = 12n * GiB - 128n * MiB;
const FILES: Record<string, string> = {
  'guest-data.txt': 'data a guest would have put on its pmem\n',
  'big.bin': 'x'.repeat(3 * 1024 * 1024),
};

interface Collected extends ScenarioRun<PatchedXenScenarioResult> {
  placement: PlacedNvdimm[];
  serial: string;
}

test('lab scenarios on the patched Xen: coldplug, file system, hotplug, two planners, kill -9 with the ledger lost, fsdax refused in a PV Dom0', { timeout: 1_200_000 }, async (t) => {
  const availability = await labAvailability();
  if ('skip' in availability) {
    t.skip(availability.skip);
    return;
  }
  const log = stderrProgress('patched-xen daemon');
  const { xen, fallback } = await prepareNewestPatchedXen(log);
  if (fallback !== null) t.diagnostic(`on Xen 4.17 with the series: ${fallback}`);
  const images = await mkdtemp(join(tmpdir(), 'xen-pmem-lab-images-'));
  const image = (id: string) => join(images, `${id}.img`);
  const startedAt = Date.now();
  const superblocks = new Map<string, SuperblockOffsets>();
  let checksumsBefore: Record<string, string> = {};
  let checksumsAfter: Record<string, string> = {};
  let nv0Tables: Buffer | null = null;
  let collected: Collected;
  try {
    superblocks.set('nv0', preparedImage(image('nv0'), SIZE));
    filesystemOnData(image('nv0'), FILES, images);
    checksumsBefore = layoutChecksums(image('nv0'), superblocks.get('nv0')!, SIZE);
    blankImage(image('nv1'), SIZE);
    superblocks.set('nv2', preparedImage(image('nv2'), SIZE));
    superblocks.set('older', shrunkReservedImage(image('older'), SIZE, perPageReservedBytes(SIZE)));
    superblocks.set('current', preparedImage(image('current'), SIZE));

    collected = await withLab({
      artifacts: availability.artifacts,
      xenImage: xen.xenImage,
      nvdimms: [
        { id: 'nv0', imagePath: image('nv0'), sizeBytes: SIZE },
        { id: 'nv1', imagePath: image('nv1'), sizeBytes: SIZE },
      ],
      hotplugSlots: 4,
      hotplugBytes: 10n * GiB,
      scenario: 'daemon-patched-xen',
      xenArgs: [...xen.bootArgs],
      env: { LAB_BOOT_DISKS: '2', LAB_FS_FILES: Object.keys(FILES).join(',') },
      timeoutMs: 900_000,
      log,
    }, async (lab) => {
      const plugs: Array<[string, () => Promise<void>]> = [
        ['hotplug', () => lab.hotplugNvdimm({ id: 'nv2', imagePath: image('nv2'), sizeBytes: SIZE })],
        ['hotplug-older', () => lab.hotplugNvdimm({ id: 'older', imagePath: image('older'), sizeBytes: SIZE, address: OLDER_AT })],
        ['hotplug-current', () => lab.hotplugNvdimm({ id: 'current', imagePath: image('current'), sizeBytes: SIZE, address: CURRENT_AT })],
        ['hotplug-fsdax', () => lab.hotplugNvdimm({ id: 'nv4', imagePath: image('nv4'), sizeBytes: FSDAX_SIZE, labelSizeBytes: 128n * KiB })],
      ];
      for (const [marker, plugIn] of plugs) {
        if (!(await waitForMarkerOrEnd(lab, marker))) break;
        await plugIn();
      }
      // Asked while the guest still runs (it powers off after done); a guest that stopped early
      // leaves no QEMU to ask, and the first subtest then says why.
      const placement = await nvdimmPlacement(lab.qmp).catch(() => []);
      await lab.waitForFile('done');
      return { ...(await readRun<PatchedXenScenarioResult>(lab, PATCHED_XEN_RESULT_FILE)), placement, serial: await readFile(lab.serialLogPath, 'utf8') };
    });
    // withLab has stopped QEMU: what the guest and Xen wrote is in the image files.
    checksumsAfter = layoutChecksums(image('nv0'), superblocks.get('nv0')!, SIZE);
    nv0Tables = readImageBytes(image('nv0'), BigInt(superblocks.get('nv0')!.reservedOffset), Number(4n * MiB));
  } finally {
    await rm(images, { recursive: true, force: true });
  }
  t.diagnostic(`whole run ${((Date.now() - startedAt) / 1000).toFixed(1)} s; guest phases: ${describePhaseTimes(phaseTimes(collected.serial))}`);
  const got = collected.result ?? ({ phase: 'no result' } as PatchedXenScenarioResult);
  const xenLines = parseXenPmemLines(collected.serial);

  const placed = (id: string): PlacedNvdimm => {
    const nvdimm = collected.placement.find((entry) => entry.id === id);
    assert.ok(nvdimm, `QEMU does not list NVDIMM ${id}`);
    return nvdimm;
  };
  /** The disk that QEMU's NVDIMM `id` became: its namespace starts where QEMU put the DIMM. */
  const diskOf = (id: string, disks: DiskFacts[]): DiskFacts => {
    const address = BigInt(placed(id).address);
    const disk = disks.find((facts) => BigInt(facts.namespaceResource) === address);
    assert.ok(disk, `no pmem disk starts at ${placed(id).address}, where QEMU put ${id} (disks: ${disks.map((d) => `${d.disk}@${d.namespaceResource}`).join(' ')})`);
    return disk;
  };
  const expected = (id: string, facts: DiskFacts): ExpectedLayout => expectedLayout(facts, superblocks.get(id)!);
  const statusOf = (status: StatusJson | undefined, disk: string): StatusDevice => {
    const device = status?.devices.find((entry) => entry.device === disk);
    assert.ok(device, `xen-pmem status --json has no ${disk} (has: ${status?.devices.map((d) => d.device).join(' ') ?? 'no status'})`);
    return device;
  };
  /** Xen's console lines about the region that starts at `spfn` (hex). */
  const xenAbout = (spfn: string, kind?: XenPmemLine['kind']): XenPmemLine[] =>
    xenLines.filter((line) => hex(line.request.spfn) === spfn && (kind === undefined || line.kind === kind));
  /** The six PFNs as Xen printed them, against the ones the daemon's journal line carries. */
  const assertXenTookWhatTheJournalSays = (layout: ExpectedLayout, entry: Parameters<typeof field>[0]): void => {
    const added = xenAbout(layout.spfn, 'added');
    assert.equal(added.length, 1, `Xen's console has ${added.length} accepted adds for spfn ${layout.spfn}:\n${xenAbout(layout.spfn).map((l) => l.line).join('\n')}`);
    const request = added[0]!.request;
    assert.deepEqual(
      [hex(request.spfn), hex(request.epfn), hex(request.rsvSpfn), hex(request.rsvEpfn), hex(request.dataSpfn), hex(request.dataEpfn)],
      ['PMEM_SPFN', 'PMEM_EPFN', 'PMEM_RSV_SPFN', 'PMEM_RSV_EPFN', 'PMEM_DATA_SPFN', 'PMEM_DATA_EPFN'].map((name) => field(entry, name)),
      'the PFNs Xen took are the ones the journal line names',
    );
  };

  await t.test('the guest scenario ran to its end', () => {
    assert.equal(collected.exitStatus, '0', guestFailure(collected));
    assert.equal(got.phase, 'done', guestFailure(collected));
  });

  await t.test('a. coldplug: the prepared NVDIMM is reported, and Xen took the six PFNs its journal line names; the blank one is absent and Xen never heard of it', () => {
    assert.ok(got.coldplug && got.install, `no coldplug result (guest stopped in phase ${got.phase})`);
    assert.deepEqual([got.install.unitAfterEnable.properties.ActiveState, got.install.unitAfterEnable.properties.UnitFileState], ['active', 'enabled']);
    assert.equal(got.coldplug.status.daemon.capability?.kind, 'xenpf-pmem', 'the probe proved XENPF_pmem on the patched Xen');
    const facts = diskOf('nv0', got.bootDisks ?? []);
    const layout = expected('nv0', facts);
    const [line, ...more] = outcomeEntries(got.coldplug.journal, facts.disk);
    assert.ok(line, `no journal line for ${facts.disk}`);
    assert.equal(more.length, 0, `${facts.disk} was decided more than once`);
    assert.deepEqual([field(line, 'PMEM_STATE'), field(line, 'PMEM_REASON')], ['reported', 'reported']);
    assertFields(line, journalFieldsOf(layout));
    assertXenTookWhatTheJournalSays(layout, line);
    assert.deepEqual([statusOf(got.coldplug.status, facts.disk).state, statusOf(got.coldplug.status, facts.disk).reason], ['reported', 'reported']);

    const blank = diskOf('nv1', got.bootDisks ?? []);
    assert.deepEqual(outcomeEntries(got.coldplug.perDevice[blank.disk] ?? [], blank.disk).map((entry) => field(entry, 'PMEM_STATE')), ['absent']);
    const blankSpfn = hex(BigInt(blank.namespaceResource) >> 12n);
    assert.deepEqual(xenAbout(blankSpfn).map((l) => l.line), [], 'Xen saw nothing for the blank NVDIMM');
  });

  await t.test('e. the data survives: the file system read in the Dom0 before the add; on the host after the boot every checksum matches and the reserved area holds Xen\'s tables', () => {
    const fs = got.filesystem;
    assert.ok(fs, `no file system result (guest stopped in phase ${got.phase})`);
    assert.equal(fs.disk, diskOf('nv0', got.bootDisks ?? []).disk, 'the file system is on nv0');
    const sha = (content: string): string => createHash('sha256').update(content).digest('hex');
    assert.deepEqual(fs.files, Object.fromEntries(Object.entries(FILES).map(([name, content]) => [name, sha(content)])));
    assert.deepEqual(checksumsAfter, checksumsBefore, 'the GPTs, both super block copies and the data area are as they were before the boot');
    assert.ok(nv0Tables);
    // nv0 sits at 4 GiB, alone in its pdx group and its M2P slot: chunk 0 of its reserved area is
    // the frame table of its 65,536 frames, chunk 1 the M2P slot, all INVALID_M2P_ENTRY.
    const added = xenAbout(hex(BigInt(diskOf('nv0', got.bootDisks ?? []).namespaceResource) >> 12n), 'added')[0];
    assert.ok(added?.kind === 'added');
    assert.deepEqual(added.chunks, { frameTable: 1, m2p: 1, compatM2p: 0 });
    const m2pFirst = Number(added.request.rsvSpfn - added.request.spfn + CHUNK_PAGES);
    assert.deepEqual(regionPageInfoProblems(nv0Tables.subarray(0, Number(2n * MiB)), 65536, { first: m2pFirst, end: m2pFirst + Number(CHUNK_PAGES) }), []);
    assert.ok(nv0Tables.subarray(Number(2n * MiB)).every((byte) => byte === 0xff), 'the M2P chunk is not all INVALID_M2P_ENTRY');
  });

  await t.test('b. hotplug: a prepared NVDIMM is reported after the hotplug was asked for, by the running daemon, and Xen took what the journal says', () => {
    const hotplug = got.hotplug;
    assert.ok(hotplug, `no hotplug result (guest stopped in phase ${got.phase})`);
    const facts = diskOf('nv2', [hotplug.facts]);
    const layout = expected('nv2', facts);
    const [line, ...more] = outcomeEntries(hotplug.journal, facts.disk);
    assert.ok(line, `no journal line for ${facts.disk}`);
    assert.equal(more.length, 0);
    assert.deepEqual([field(line, 'PMEM_STATE'), field(line, 'PMEM_REASON')], ['reported', 'reported']);
    assertFields(line, journalFieldsOf(layout));
    assertXenTookWhatTheJournalSays(layout, line);
    // Order, not time: the guest asked for the NVDIMM, then the daemon reported it. Where udev's own
    // records fall is a diagnostic only: udev restamps USEC_INITIALIZED of a device it keeps no
    // database for (an nd namespace) at each of its events, so it is no first record, and an nd
    // event may lead the daemon to the disk before udev finished the disk's own event.
    const order = hotplugOrder(hotplug, field(line, '__MONOTONIC_TIMESTAMP')!);
    assert.ok(order.requested !== null, 'the guest did not record when it asked for the NVDIMM');
    assert.ok(order.requested < order.decided, `reported at ${order.decided} µs, before the guest asked for the NVDIMM (${order.requested} µs)`);
    t.diagnostic(`hotplug: reported ${(Number(order.decided - order.requested) / 1e6).toFixed(3)} s after the request, ${order.sinceDiskUs === null ? '?' : (order.sinceDiskUs / 1e6).toFixed(3)} s after udev initialised ${facts.disk}`);
    assert.equal(hotplug.unitAfter.properties.MainPID, hotplug.unitBefore.properties.MainPID, 'the running daemon took it');
    assert.equal(hotplug.unitAfter.properties.NRestarts, hotplug.unitBefore.properties.NRestarts, 'without a restart');
  });

  await t.test('d. across Xen\'s table boundaries an older planner\'s reserve is too small (Xen: ENOSPC reserved_exhausted, rejected with Xen\'s numbers) and this planner\'s is enough', () => {
    const straddling = got.straddling;
    assert.ok(straddling, `no straddling result (guest stopped in phase ${got.phase})`);
    const older = diskOf('older', [straddling.older.facts]);
    const olderLayout = expected('older', older);
    assert.equal(BigInt(olderLayout.regionStart), OLDER_AT);
    assert.deepEqual([straddling.older.decided.state, straddling.older.decided.reason], ['rejected', 'reserved-exhausted']);
    const refused = xenAbout(olderLayout.spfn, 'refused');
    // One add per daemon run: the refusal binds the driver again and the disk comes back, but the
    // same layout is not sent again; the run started after the kill -9 (c) sends it once more.
    assert.equal(refused.length, 2, `Xen refused the older layout ${refused.length} times, want one per daemon run:\n${refused.map((l) => l.line).join('\n')}`);
    assert.equal(xenAbout(olderLayout.spfn, 'added').length, 0, 'Xen took nothing of it');
    const first = refused[0]!;
    assert.ok(first.kind === 'refused');
    assert.deepEqual([first.errno, first.reason], ['ENOSPC', 'reserved-exhausted']);
    // Two pdx groups and two M2P slots: four chunks, 0x800 pages; the older planner kept 4 MiB, 0x400.
    assert.match(first.message, /the tables need 0x800 pages in 2 MiB chunks \(frame table 2, M2P 2, compat M2P 0\)/);
    t.diagnostic(`older planner at ${hex(OLDER_AT)}: ${first.message}`);

    const current = diskOf('current', [straddling.current.facts]);
    const currentLayout = expected('current', current);
    assert.equal(BigInt(currentLayout.regionStart), CURRENT_AT);
    assert.deepEqual([straddling.current.decided.state, straddling.current.decided.reason], ['reported', 'reported']);
    const [line] = outcomeEntries(straddling.observation.journal, current.disk, 'reported');
    assert.ok(line);
    assertXenTookWhatTheJournalSays(currentLayout, line);
    const added = xenAbout(currentLayout.spfn, 'added')[0];
    assert.ok(added?.kind === 'added');
    assert.deepEqual(added.chunks, { frameTable: 2, m2p: 2, compatM2p: 0 });
    assert.ok(added.reservedPagesUsed <= plannedReservedBytes(SIZE / 4096n) / 4096n, `Xen used ${hex(added.reservedPagesUsed)} pages of a reserve of ${hex(plannedReservedBytes(SIZE / 4096n) / 4096n)}`);
    t.diagnostic(`this planner at ${hex(CURRENT_AT)}: Xen used ${hex(added.reservedPagesUsed)} of ${hex(added.reservedPages)} reserved pages`);
  });

  await t.test('c. kill -9 with the ledger deleted: systemd restarts the daemon, which reports nothing again and still shows every reported device; xen-pmem status shows Xen holding exactly those regions', () => {
    const restart = got.restart;
    assert.ok(restart, `no restart result (guest stopped in phase ${got.phase})`);
    assert.notEqual(restart.after.unit.properties.MainPID, restart.before.unit.properties.MainPID);
    assert.equal(Number(restart.after.unit.properties.NRestarts), Number(restart.before.unit.properties.NRestarts) + 1);
    const reportedBefore = restart.before.status.devices.filter((device) => device.state === 'reported').map((device) => device.device).sort();
    assert.equal(reportedBefore.length, 3, `reported before the kill: ${reportedBefore.join(' ')} (nv0, nv2, current)`);
    const after = new Map(restart.after.status.devices.map((device) => [device.device, device]));
    assert.deepEqual(reportedBefore.map((disk) => [disk, after.get(disk)?.state]), reportedBefore.map((disk) => [disk, 'reported']));
    const pid = restart.after.unit.properties.MainPID;
    const sentAgain = restart.after.journal.filter((entry) => String(entry._PID) === pid && field(entry, 'PMEM_STATE') === 'reported' && field(entry, 'PMEM_REASON') === 'reported');
    assert.deepEqual(sentAgain.map((entry) => entry.MESSAGE), [], 'the restarted daemon sent no add');
    // xen-pmem status asks Xen itself: it holds the three regions, each beside its device, and
    // nothing the daemon's records do not explain.
    const xen = restart.after.status.xen;
    assert.equal(xen?.available, true, JSON.stringify(xen));
    assert.equal(xen?.regions?.length, 3, JSON.stringify(xen?.regions));
    assert.deepEqual(xen?.unexplained, []);
    assert.deepEqual(reportedBefore.map((disk) => [disk, after.get(disk)?.xen?.holds, after.get(disk)?.xen?.differences]), reportedBefore.map((disk) => [disk, true, []]));
    t.diagnostic(`restarted daemon (pid ${pid}): ${restart.after.journal.filter((entry) => String(entry._PID) === pid).map((entry) => entry.MESSAGE).join(' | ')}`);
  });

  await t.test('fsdax in this PV Dom0: rejected (fsdax-in-pv-dom0) with the ndctl command that makes it raw; its pfn device stays bound and Xen hears nothing of it', () => {
    const fsdax = got.fsdax;
    assert.ok(fsdax, `no fsdax result (guest stopped in phase ${got.phase})`);
    const create = fsdax.ndctl.find((record) => record.command.includes('create-namespace'));
    assert.equal(create?.status, 0, create?.stderr);
    assert.match(fsdax.facts.parent, /^pfn\d+\.\d+$/);
    assert.equal(fsdax.setup.status, 0, fsdax.setup.stderr);
    assert.deepEqual([fsdax.decided.state, fsdax.decided.reason], ['rejected', 'fsdax-in-pv-dom0']);
    const device = statusOf(fsdax.status, fsdax.disk);
    assert.match(device.message, /is in fsdax mode and this Dom0 is a PV guest, where unbinding its pfn device before the report crashes Linux; make it a raw namespace \(ndctl create-namespace -f -e namespace\d+\.\d+ -m raw\)/);
    assert.equal(fsdax.stillBound, true, 'the pfn device keeps its driver and the disk its node');
    const spfn = hex(BigInt(fsdax.facts.pfnResource!) >> 12n);
    assert.deepEqual(xenAbout(spfn).map((line) => line.line), [], 'Xen saw nothing for the fsdax namespace');
    assert.deepEqual(collected.serial.split('\n').filter((line) => /BUG: unable to handle|Oops|rcu_preempt detected stalls/.test(line)), [], 'the Dom0 kernel stayed well');
  });

  await t.test('Xen accepted at most one add per region over the whole boot and never crashed', () => {
    const accepted = new Map<string, number>();
    for (const line of xenLines.filter((entry) => entry.kind === 'added')) accepted.set(hex(line.request.spfn), (accepted.get(hex(line.request.spfn)) ?? 0) + 1);
    assert.deepEqual([...accepted.entries()].filter(([, count]) => count > 1), []);
    assert.equal(accepted.size, 3, `accepted: ${[...accepted.keys()].join(' ')} (nv0, nv2, current)`);
    assert.deepEqual(xenLines.filter((line) => line.kind === 'refused' && line.reason === 'unparsed').map((line) => line.line), []);
    assert.deepEqual(collected.serial.split('\n').filter((line) => /Panic|FATAL|Xen BUG|Assertion '/.test(line)), []);
  });
});
