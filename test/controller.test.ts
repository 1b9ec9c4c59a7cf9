// The controller with in-process ports over a fixture host: the real sysfs reader, real sparse
// images prepared with sfdisk, the real state store, and the real HypercallBridge over koffi into
// the test hypervisor. Only the udev event source is replaced: tests call handleEvent themselves.

import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';

import { MiB } from '../src/core/units.js';
import type { Config } from '../src/daemon/config.js';
import { Controller, type DaemonPorts } from '../src/daemon/controller.js';
import type { DeviceEvent } from '../src/daemon/ports.js';
import { loadState, StateStore, type DaemonState, type DeviceRecord } from '../src/daemon/state-store.js';
import { LedgerJournal } from '../src/daemon/ledger.js';
import { openDevice } from '../src/io/device.js';
import type { DeviceReader } from '../src/io/ports.js';
import { listPmemNamespaces, readPmemByBlockName } from '../src/sysfs/model.js';
import { HypercallBridge } from '../src/xen/bridge.js';
import type { RegionSpec } from '../fixtures/sysfs-tree.js';
import { flipByte } from './helpers/damage.js';
import { mockSetTimeout } from './helpers/mock-timers.js';
import {
  bridgeWithReport, makeDaemonHost, recordingLogger, recordingNotifier, show, testConfig, waitFor,
  type DaemonHost, type RecordingLogger, type XenEnvOptions, forgetXenInProcess,
} from '../fixtures/daemon-host.js';

const GiB4 = 0x1_0000_0000n;
const SIZE = 256n * MiB;

function rawRegion(id: number, start: bigint = GiB4 + BigInt(id) * SIZE): RegionSpec {
  return { id, start, size: SIZE, namespaces: [{ id: 0, mode: 'raw' }] };
}

interface Rig {
  host: DaemonHost;
  log: RecordingLogger;
  controller: Controller;
  ports: DaemonPorts;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  forgetXenInProcess();
});

async function makeHost(label: string, regions: RegionSpec[], xen: XenEnvOptions = {}): Promise<DaemonHost> {
  const host = await makeDaemonHost(`controller-${label}`, { regions });
  cleanups.push(() => host.cleanup());
  host.useXenInProcess(xen);
  return host;
}

/** A controller as xen-pmemd builds one, over `host`; `previous` is what a restart loads. */
function rig(host: DaemonHost, options: { config?: Config; ports?: Partial<DaemonPorts>; previous?: DaemonState | null } = {}): Rig {
  const log = recordingLogger();
  const ports = host.ports({ log, ...options.ports });
  const controller = new Controller(options.config ?? testConfig(), ports, options.previous ?? null);
  cleanups.push(() => controller.stop());
  return { host, log, controller, ports };
}

function recordOf(controller: Controller, device: string): DeviceRecord {
  const record = controller.status.snapshot().devices.find((each) => each.device === device);
  assert.ok(record, `a record for ${device}; have ${controller.status.snapshot().devices.map((each) => each.device).join(', ')}`);
  return record;
}

function stateOf(controller: Controller, device: string): [string, string] {
  const record = recordOf(controller, device);
  return [record.state, record.reason];
}

function blockEvent(sysname: string, action = 'change'): DeviceEvent {
  return { action, subsystem: 'block', sysname, syspath: `/sys/devices/virtual/block/${sysname}`, devtype: 'disk' };
}

async function loadedState(host: DaemonHost): Promise<DaemonState> {
  const loaded = await loadState(host.stateDir);
  assert.equal(loaded.kind, 'loaded', show(loaded));
  return (loaded as Extract<typeof loaded, { kind: 'loaded' }>).state;
}

/** pmem0 reported by a first run whose state then lost Xen's answer: the ledger entry is pending again. */
async function pendingAfterFirstRun(label: string): Promise<{ host: DaemonHost; crashed: DaemonState }> {
  const host = await makeHost(label, [rawRegion(0)]);
  await host.prepare('pmem0');
  const first = rig(host);
  await first.controller.start();
  await first.controller.stop();
  const crashed = await loadedState(host);
  crashed.ledger[0]!.status = 'pending';
  return { host, crashed };
}

interface CountingReaders {
  openReader: DaemonPorts['openReader'];
  opened: string[];
  maxInFlight: Map<string, number>;
}

/** openReader over the real device reader, counting opens and how many are open per device. */
function countingReaders(options: { beforeOpen?: (devPath: string, call: number) => Promise<void>; readDelayMs?: number } = {}): CountingReaders {
  const opened: string[] = [];
  const inFlight = new Map<string, number>();
  const maxInFlight = new Map<string, number>();
  return {
    opened,
    maxInFlight,
    async openReader(devPath) {
      opened.push(devPath);
      const now = (inFlight.get(devPath) ?? 0) + 1;
      inFlight.set(devPath, now);
      maxInFlight.set(devPath, Math.max(maxInFlight.get(devPath) ?? 0, now));
      const release = () => inFlight.set(devPath, (inFlight.get(devPath) ?? 1) - 1);
      try {
        await options.beforeOpen?.(devPath, opened.length);
        const reader = await openDevice(devPath, 'read');
        return instrumented(reader, release, options.readDelayMs ?? 0);
      } catch (error) {
        release();
        throw error;
      }
    },
  };
}

function instrumented(reader: DeviceReader, release: () => void, readDelayMs: number): DeviceReader {
  return {
    path: reader.path,
    size: reader.size,
    sectorSize: reader.sectorSize,
    isBlockDevice: reader.isBlockDevice,
    get bytesRead() { return reader.bytesRead; },
    async read(offset, length) {
      if (readDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, readDelayMs));
      return reader.read(offset, length);
    },
    async close() {
      release();
      await reader.close();
    },
  };
}

function successfulAdds(host: DaemonHost): number {
  return host.regionAdds().filter((call) => call.result === 'OK').length;
}

describe('coldplug', () => {
  test('Xen without pmem_add (ENOSYS): one notice for the hypervisor, one warning per valid device, nothing for the blank one', async () => {
    const host = await makeHost('enosys-lines', [rawRegion(0), rawRegion(1), rawRegion(2)], { mode: 'enosys' });
    await host.prepare('pmem0');
    await host.prepare('pmem1');
    await host.blank('pmem2');
    const { controller, log } = rig(host);
    await controller.start();

    const warnings = log.entries.filter((entry) => entry.level === 'warn' || entry.level === 'error');
    assert.deepEqual(warnings.map((entry) => [entry.fields.device, entry.fields.state, entry.fields.reason]).sort(), [
      ['pmem0', 'unsupported', 'enosys'],
      ['pmem1', 'unsupported', 'enosys'],
    ]);
    const hypervisorLines = log.entries.filter((entry) => entry.fields.capability === 'enosys');
    assert.deepEqual(hypervisorLines.map((entry) => entry.level), ['notice']);
    assert.equal(host.regionAdds().length, 0, 'no region is sent to a hypervisor without pmem_add');
  });

  test('a damaged primary copy: reported from the backup, with the note as a warning of its own and on the record', async () => {
    const host = await makeHost('damaged-primary', [rawRegion(0)]);
    await host.prepare('pmem0');
    flipByte(join(host.roots.devRoot, 'pmem0'), 0x100000n + 100n);
    const { controller, log } = rig(host);
    await controller.start();

    assert.deepEqual(stateOf(controller, 'pmem0'), ['reported', 'reported']);
    const record = recordOf(controller, 'pmem0');
    assert.equal(record.notes?.length, 1);
    assert.match(record.notes![0]!, /primary super block at 0x100000 is damaged \(bad-checksum: .*\); the backup at 0xff00000 is used/);
    const lines = log.entries.filter((entry) => entry.fields.device === 'pmem0').map((entry) => [entry.level, entry.fields.reason]);
    assert.deepEqual(lines, [['warn', 'superblock-copy-damaged'], ['notice', 'reported']]);
  });

  test('decides every present device before start() resolves', async () => {
    const host = await makeHost('coldplug', [
      rawRegion(0),
      { id: 1, start: GiB4 + SIZE, size: SIZE, namespaces: [{ id: 0, mode: 'fsdax' }] },
      rawRegion(2),
      { id: 3, start: GiB4 + 3n * SIZE, size: SIZE, namespaces: [{ id: 0, mode: 'devdax' }] },
    ]);
    await host.prepare('pmem0');
    await host.prepare('pmem1');
    await host.blank('pmem2');
    // Slow reads, so that a coldplug that did not wait would resolve with devices undecided.
    const readers = countingReaders({ readDelayMs: 15 });
    const { controller, ports } = rig(host, { ports: { openReader: readers.openReader } });

    const decidedAtResolve = await controller.start().then(() => controller.status.snapshot());

    assert.deepEqual(decidedAtResolve.devices.map((each) => [each.device, each.state, each.reason]), [
      ['namespace3.0', 'rejected', 'devdax-mode'],
      ['pmem0', 'reported', 'reported'],
      ['pmem1', 'reported', 'reported'],
      ['pmem2', 'absent', 'no-superblock'],
    ]);
    assert.equal(decidedAtResolve.ready, true);
    assert.equal(readers.opened.length, 3, 'each block device scanned once');
    assert.equal(successfulAdds(host), 2);

    const onDisk = await loadedState(host);
    assert.equal(onDisk.ready, true);
    assert.deepEqual(onDisk.devices.map((each) => each.state), ['rejected', 'reported', 'reported', 'absent']);
    assert.deepEqual(onDisk.ledger.map((entry) => [entry.device, entry.status]), [['pmem0', 'reported'], ['pmem1', 'reported']]);
    // No STATUS= per device during coldplug: READY=1 carries the summary (the lifecycle sends it).
    assert.deepEqual((ports.notifier as ReturnType<typeof recordingNotifier>).sent, []);
    assert.equal(controller.summary(), 'pmem devices: 1 absent, 1 rejected, 2 reported');
  });

  test('a device the previous run knew that is gone now is recorded as removed', async () => {
    const host = await makeHost('coldplug-gone', [rawRegion(0)]);
    await host.prepare('pmem0');
    const first = rig(host);
    await first.controller.start();
    await first.controller.stop();
    const previous = await loadedState(host);
    const second = rig(host, { previous, ports: { readByBlockName: async () => null, listNamespaces: async () => [] } });
    await second.controller.start();
    assert.deepEqual(stateOf(second.controller, 'pmem0'), ['removed', 'removed-while-reported']);
  });
});

describe('events', () => {
  test('a burst of 50 events for one device: at most 2 scans and exactly one hypercall', async () => {
    const host = await makeHost('burst', [rawRegion(0)]);
    await host.prepare('pmem0');
    let releaseFirstScan!: () => void;
    const firstScanHeld = new Promise<void>((resolve) => { releaseFirstScan = resolve; });
    const readers = countingReaders({ beforeOpen: (_path, call) => (call === 1 ? firstScanHeld : Promise.resolve()) });
    const { controller } = rig(host, { ports: { openReader: readers.openReader } });

    // Half the burst before the first scan starts, half while it is held open.
    const handled: Promise<void>[] = [];
    for (let i = 0; i < 25; i++) handled.push(controller.handleEvent(blockEvent('pmem0', i === 0 ? 'add' : 'change')));
    await waitFor('the first scan to start', () => readers.opened.length === 1);
    for (let i = 0; i < 25; i++) handled.push(controller.handleEvent(i % 2 === 0 ? blockEvent('pmem0') : blockEvent('pmem0p1')));
    releaseFirstScan();
    await Promise.all(handled);

    assert.ok(readers.opened.length >= 1 && readers.opened.length <= 2, `${readers.opened.length} scans`);
    assert.equal(host.regionAdds().length, 1, 'exactly one pmem_add carried the region');
    assert.equal(successfulAdds(host), 1);
    // The second scan, if any, finds the ledger entry the first one wrote; within one run the
    // record keeps the reason of the moment Xen took it.
    assert.deepEqual(stateOf(controller, 'pmem0'), ['reported', 'reported']);
  });

  test('work for one device never runs twice at once, whatever the events', async () => {
    const host = await makeHost('overlap', [rawRegion(0)]);
    const { namespaceDir } = host.namespaceOf('pmem0');
    await host.prepare('pmem0');
    const readers = countingReaders({ readDelayMs: 3 });
    const { controller } = rig(host, { ports: { openReader: readers.openReader } });

    // Events of every kind that lead to pmem0, spread over time so they land before, during and
    // after scans: block events, partition events and nd namespace events.
    let seed = 7;
    // xorshift32: a reproducible schedule, so a failure can be replayed.
    const next = () => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return seed >>> 0; };
    const handled: Promise<void>[] = [];
    for (let i = 0; i < 60; i++) {
      const pick = next() % 4;
      if (pick === 0) handled.push(controller.handleEvent(blockEvent('pmem0')));
      else if (pick === 1) handled.push(controller.handleEvent(blockEvent('pmem0p1')));
      else if (pick === 2) handled.push(controller.handleEvent({ action: 'change', subsystem: 'nd', sysname: 'namespace0.0', syspath: namespaceDir }));
      else await new Promise((resolve) => setTimeout(resolve, next() % 12));
    }
    await Promise.all(handled);

    assert.ok(readers.opened.length >= 2, `events kept the device busy (${readers.opened.length} scans)`);
    assert.equal(readers.maxInFlight.get(host.devPath('pmem0')), 1, 'never two scans of pmem0 at once');
    assert.equal(successfulAdds(host), 1);
    assert.equal(host.regionAdds().length, 1);
  });

  test('events for a partition (pmem0p1) rescan its disk pmem0', async () => {
    const host = await makeHost('partition', [rawRegion(0)]);
    await host.prepare('pmem0');
    const readers = countingReaders();
    const { controller } = rig(host, { ports: { openReader: readers.openReader } });
    await controller.start();
    assert.deepEqual(readers.opened, [host.devPath('pmem0')]);

    await controller.handleEvent({ action: 'add', subsystem: 'block', sysname: 'pmem0p1', syspath: '/sys/devices/x/block/pmem0/pmem0p1', devtype: 'partition' });

    assert.deepEqual(readers.opened, [host.devPath('pmem0'), host.devPath('pmem0')]);
    assert.deepEqual(controller.status.snapshot().devices.map((each) => each.device), ['pmem0'], 'no record for the partition');
    assert.equal(host.regionAdds().length, 1);
  });

  test('an nd namespace event rescans the namespace\'s block device', async () => {
    const host = await makeHost('nd-event', [rawRegion(0)]);
    await host.prepare('pmem0');
    const readers = countingReaders();
    const { controller } = rig(host, { ports: { openReader: readers.openReader } });
    await controller.handleEvent({ action: 'bind', subsystem: 'nd', sysname: 'namespace0.0', syspath: host.namespaceOf('pmem0').namespaceDir });
    assert.equal(readers.opened.length, 1, 'the scan the nd event leads to');
    assert.deepEqual(stateOf(controller, 'pmem0'), ['reported', 'reported']);
  });

  test('hotplug events in any order across devices: the disk is decided once, reported once, with no record for what is not a disk', async () => {
    // udev finishes events for unrelated devices (DIMM, region, namespace seeds) in any order,
    // and a region's bind can come before or after the namespace its probe registers: orders
    // taken from real runs, and reversed.
    const seen = [
      ['add nd nmem1', 'add nd region1', 'bind nd region1', 'bind nd nmem1', 'add nd btt1.0', 'add nd pfn1.0', 'add nd dax1.0', 'add nd namespace1.0', 'add block pmem1', 'bind nd namespace1.0'],
      ['add nd region1', 'add nd namespace1.0', 'bind nd region1', 'add nd nmem1', 'add block pmem1', 'bind nd namespace1.0', 'add nd btt1.1', 'bind nd nmem1'],
      ['add block pmem1', 'bind nd namespace1.0', 'add nd namespace1.0', 'bind nd region1', 'add nd region1', 'bind nd nmem1', 'add nd nmem1'],
    ];
    for (const [index, order] of seen.entries()) {
      const host = await makeHost(`hotplug-order-${index}`, [rawRegion(1)]);
      await host.prepare('pmem1');
      const readers = countingReaders();
      // The daemon runs and has seen nothing of this region yet: no coldplug.
      const { controller } = rig(host, { ports: { openReader: readers.openReader } });
      const namespaceDir = host.namespaceOf('pmem1').namespaceDir;
      const handled: Promise<void>[] = [];
      for (const event of order) {
        const [action, subsystem, sysname] = event.split(' ') as [string, string, string];
        const syspath = sysname === 'namespace1.0' ? namespaceDir : sysname === 'pmem1' ? `${namespaceDir}/block/pmem1` : `/sys/devices/ndbus0/${sysname}`;
        handled.push(controller.handleEvent(subsystem === 'block' ? { action, subsystem, sysname, syspath, devtype: 'disk' } : { action, subsystem, sysname, syspath }));
      }
      await Promise.all(handled);
      assert.deepEqual(stateOf(controller, 'pmem1'), ['reported', 'reported'], `order ${index}: ${order.join(', ')}`);
      assert.equal(successfulAdds(host), 1, `order ${index}: one add in all`);
      assert.ok(readers.opened.length >= 1 && readers.opened.length <= 2, `order ${index}: ${readers.opened.length} scans (a burst costs at most two)`);
      assert.deepEqual(controller.status.snapshot().devices.map((each) => each.device), ['pmem1'], `order ${index}: records only for the disk`);
    }
  });

  test('a device removed during its scan ends removed, not failed or retrying', async () => {
    const host = await makeHost('removed', [rawRegion(0)]);
    await host.prepare('pmem0');
    let gone = false;
    const { controller, log } = rig(host, {
      ports: {
        readByBlockName: async (name) => (gone ? null : readPmemByBlockName(host.roots, name)),
        openReader: async (devPath) => {
          gone = true;
          throw Object.assign(new Error(`ENXIO: no such device or address, open '${devPath}'`), { code: 'ENXIO', errno: -6 });
        },
      },
    });
    await controller.handleEvent(blockEvent('pmem0', 'add'));

    assert.deepEqual(stateOf(controller, 'pmem0'), ['removed', 'removed']);
    assert.equal(recordOf(controller, 'pmem0').nextAttempt, undefined, 'no retry scheduled');
    const states = log.entries.filter((entry) => entry.fields.device === 'pmem0').map((entry) => entry.fields.state);
    assert.deepEqual(states, ['removed'], 'nothing but removed was ever logged for pmem0');
    assert.equal(log.entries.find((entry) => entry.fields.state === 'removed')?.level, 'info');
    assert.equal(host.regionAdds().length, 0);
  });

  test('a reported device that goes away is removed-while-reported, logged as an error', async () => {
    const host = await makeHost('removed-reported', [rawRegion(0)]);
    await host.prepare('pmem0');
    let gone = false;
    // The NVDIMM goes away: its block device and its namespace.
    const { controller, log } = rig(host, {
      ports: {
        readByBlockName: async (name) => (gone ? null : readPmemByBlockName(host.roots, name)),
        listNamespaces: async () => (gone ? [] : listPmemNamespaces(host.roots)),
      },
    });
    await controller.start();
    gone = true;
    await controller.handleEvent(blockEvent('pmem0', 'remove'));
    const record = recordOf(controller, 'pmem0');
    assert.deepEqual([record.state, record.reason], ['removed', 'removed-while-reported']);
    assert.equal(record.layout?.request.spfn, 0x100000n, 'the layout Xen still holds stays on record');
    const entry = log.entries.find((each) => each.fields.reason === 'removed-while-reported');
    assert.equal(entry?.level, 'error');
    assert.match(entry?.message ?? '', /reboot the host/);
  });
});

describe('answers from the hypervisor', () => {
  test('ENOMEM once, then success: retrying, then reported, with exactly 2 add calls', async () => {
    const host = await makeHost('enomem', [rawRegion(0)], { mode: 'enomem-once' });
    await host.prepare('pmem0');
    // A retry slower than coldplug's last state write, so the retrying state can be seen first.
    const { controller, log } = rig(host, { config: testConfig({ retry: { initialMs: 300, maxMs: 300 } }) });
    await controller.start();

    const retrying = recordOf(controller, 'pmem0');
    assert.deepEqual([retrying.state, retrying.reason], ['retrying', 'no-memory']);
    assert.ok(retrying.nextAttempt, 'the next attempt is on record');
    await waitFor('the retry to report pmem0', () => recordOf(controller, 'pmem0').state === 'reported');

    assert.deepEqual(host.regionAdds().map((call) => call.result), ['ENOMEM', 'OK']);
    assert.deepEqual(stateOf(controller, 'pmem0'), ['reported', 'reported']);
    assert.deepEqual(log.entries.filter((entry) => entry.fields.device === 'pmem0').map((entry) => [entry.level, entry.fields.state]), [
      ['warn', 'retrying'],
      ['notice', 'reported'],
    ]);
    // state.json is written at most every 100 ms; stopping writes it at once.
    await controller.stop();
    assert.deepEqual((await loadedState(host)).ledger.map((entry) => entry.status), ['reported']);
  });

  test('a retrying device has one retry pending: the one its record announces', async (t) => {
    const host = await makeHost('one-retry', [rawRegion(0)], { mode: 'ebusy' });
    await host.prepare('pmem0');
    let releaseFirstScan!: () => void;
    const firstScanHeld = new Promise<void>((resolve) => { releaseFirstScan = resolve; });
    const readers = countingReaders({ beforeOpen: (_path, call) => (call === 1 ? firstScanHeld : Promise.resolve()) });
    const { controller } = rig(host, { config: testConfig({ retry: { initialMs: 40, maxMs: 1000 } }), ports: { openReader: readers.openReader } });
    const first = controller.handleEvent(blockEvent('pmem0', 'add'));
    await waitFor('the first scan to start', () => readers.opened.length === 1);
    // An event during the first pass makes a second pass; both end in retrying (EBUSY mapped),
    // the first with a 40 ms delay, the second with 80 ms (doubled).
    const second = controller.handleEvent(blockEvent('pmem0'));
    mockSetTimeout(t.mock.timers);
    releaseFirstScan();
    await Promise.all([first, second]);
    assert.equal(readers.opened.length, 2);
    assert.deepEqual(host.regionAdds().map((call) => call.result), ['EBUSY', 'EBUSY']);
    const announced = recordOf(controller, 'pmem0').nextAttempt;

    // setTimeout is mocked here, so waiting goes by turns of the loop, never by the clock: a retry
    // that fired opens the device within a few of them.
    const turns = async (count = 20): Promise<void> => { for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve)); };
    const until = async (what: string, condition: () => boolean): Promise<void> => {
      for (let turn = 0; !condition(); turn++) {
        if (turn > 100_000) assert.fail(`${what} never came`);
        await turns(1);
      }
    };
    t.mock.timers.tick(40);
    await turns();
    assert.equal(readers.opened.length, 2, 'the first pass\'s retry was superseded by the second\'s');
    t.mock.timers.tick(40);
    await until('the announced retry', () => readers.opened.length === 3);
    await until('its outcome', () => recordOf(controller, 'pmem0').nextAttempt !== announced);
    await turns();
    assert.equal(readers.opened.length, 3, 'the announced retry runs once');
  });

  // The behaviour this test pins changed on purpose. Before, the controller kept the first
  // capability it saw for its whole life: after a denied probe (EPERM) the bridge would have
  // proven pmem_add at the next question, but nobody asked it again, so the change event below
  // left pmem0 unsupported/probe-failed and no add reached Xen until the daemon was restarted.
  // On that code this test fails at the first assertion after the change event.
  test('a denied probe is asked again: EPERM, then the pmem hypervisor, a change event, and the add is made', async () => {
    const host = await makeHost('denial-lifted', [rawRegion(0)], { mode: 'eperm' });
    await host.prepare('pmem0');
    const { controller, log } = rig(host);
    await controller.start();
    assert.deepEqual(stateOf(controller, 'pmem0'), ['unsupported', 'probe-failed']);
    assert.equal(host.regionAdds().length, 0);

    // The denial is lifted (the hypervisor reads its mode on every call).
    host.useXenInProcess({ mode: 'pmem' });
    await controller.handleEvent(blockEvent('pmem0'));

    assert.deepEqual(stateOf(controller, 'pmem0'), ['reported', 'reported']);
    assert.deepEqual(host.regionAdds().map((call) => call.result), ['OK']);
    assert.deepEqual(controller.status.snapshot().capability, { kind: 'xenpf-pmem', xenVersion: '4.17.7-pmem' });
    assert.ok(log.entries.some((entry) => entry.fields.capability === 'xenpf-pmem'), 'the new capability is said once it is proven');

    // Proven now: later decisions never probe again.
    const probes = () => host.xenCalls().filter((call) => call.op === 'platform_op' && / index=0xffffffff /.test(call.line)).length;
    const provenAfter = probes();
    await controller.handleEvent(blockEvent('pmem0'));
    assert.equal(probes(), provenAfter, 'no probe on the success path');
    assert.deepEqual(host.regionAdds().map((call) => call.result), ['OK']);
  });

  test('upstream Xen 4.20 (op 64 is XENPF_get_dom0_console, no op 67): unsupported, and no region is ever sent', async () => {
    const host = await makeHost('dom0-console', [rawRegion(0)], { mode: 'dom0-console' });
    await host.prepare('pmem0');
    const { controller } = rig(host);
    await controller.start();
    assert.deepEqual(stateOf(controller, 'pmem0'), ['unsupported', 'enosys']);
    assert.match(recordOf(controller, 'pmem0').message, /Xen 4\.20\.4 does not implement XENPF_pmem \(platform op 67\)/);
    assert.ok(host.xenCalls().every((call) => call.cmd !== 64), 'op 64 is never sent');
    assert.equal(host.regionAdds().length, 0);
    assert.deepEqual((await loadedState(host)).ledger, []);
  });

  test('dry run as xen-pmemd wires it: no hypercall at all, the request in the message, never reported', async () => {
    const host = await makeHost('dry-run', [rawRegion(0)]);
    await host.prepare('pmem0');
    const { controller, log } = rig(host, {
      config: testConfig({ dryRun: true }),
      ports: { bridge: new HypercallBridge(() => assert.fail('a dry run opens no libxencall')) },
    });
    await controller.start();
    const record = recordOf(controller, 'pmem0');
    assert.deepEqual([record.state, record.reason], ['unsupported', 'dry-run']);
    assert.match(record.message, /spfn=0x100000 epfn=0x110000 rsv_spfn=0x100200 rsv_epfn=0x100e00 data_spfn=0x100e00 data_epfn=0x10fe00/);
    assert.equal(host.xenCalls().length, 0);
    assert.deepEqual(controller.status.snapshot().ledger, []);
    assert.ok(!log.entries.some((entry) => /not a Xen Dom0/.test(entry.message)), 'a dry run is not mistaken for a missing Dom0');
  });
});

describe('exactly once across restarts', () => {
  test('a restart does not report again: same hypervisor, saved state, reported-earlier', async () => {
    const host = await makeHost('restart', [rawRegion(0)]);
    await host.prepare('pmem0');
    const first = rig(host);
    await first.controller.start();
    await first.controller.stop();
    assert.equal(host.regionAdds().length, 1);

    const second = rig(host, { previous: await loadedState(host), ports: { bridge: host.openBridge() } });
    await second.controller.start();

    assert.deepEqual(stateOf(second.controller, 'pmem0'), ['reported', 'reported-earlier']);
    assert.equal(host.regionAdds().length, 1, 'no new pmem_add in the hypervisor log');
    assert.equal(host.xenRegions().length, 1);
  });

  test('a pending entry left by a crash after the hypercall is confirmed by Xen\'s list, not reported twice', async () => {
    // The crash: Xen took the add, the answer never reached the state file.
    const { host, crashed } = await pendingAfterFirstRun('crash-after');
    await new StateStore(host.stateDir).save(crashed);

    const second = rig(host, { previous: crashed, ports: { bridge: host.openBridge() } });
    await second.controller.start();

    assert.deepEqual(stateOf(second.controller, 'pmem0'), ['reported', 'reported-before-restart']);
    assert.deepEqual(host.regionAdds().map((call) => [call.result, call.rule]), [['OK', 0]], 'Xen listed it: no second add');
    assert.equal(host.xenRegions().length, 1, 'Xen holds the region once');
    const ledger = (await loadedState(host)).ledger;
    assert.deepEqual(ledger.map((entry) => [entry.device, entry.status]), [['pmem0', 'reported']]);
  });

  test('a pending entry left by a crash before the hypercall: Xen does not list it, so it is added once', async () => {
    const { host, crashed } = await pendingAfterFirstRun('crash-before');
    // The crash came before the hypercall: the hypervisor never saw the region.
    await rm(host.xenStatePath);

    const second = rig(host, { previous: crashed, ports: { bridge: host.openBridge() } });
    await second.controller.start();

    assert.deepEqual(stateOf(second.controller, 'pmem0'), ['reported', 'reported']);
    assert.equal(host.xenRegions().length, 1);
    assert.equal(second.controller.status.snapshot().ledger.length, 1, 'the entry was completed, not duplicated');
  });

  test('a pending entry and Xen cannot be asked what it holds: the add is sent again, and EEXIST already_added confirms it', async () => {
    const { host, crashed } = await pendingAfterFirstRun('crash-no-list');
    const real = host.openBridge();
    const bridge = { ...bridgeWithReport(real, (request) => real.report(request)), held: async () => ({ kind: 'unavailable' as const, reason: 'query-failed', message: 'no answer' }) };
    const second = rig(host, { previous: crashed, ports: { bridge } });
    await second.controller.start();
    assert.deepEqual(stateOf(second.controller, 'pmem0'), ['reported', 'reported-before-restart']);
    assert.deepEqual(host.regionAdds().map((call) => call.result), ['OK', 'EEXIST']);
    assert.equal(host.xenRegions().length, 1);
  });

  test('state dir unwritable: no hypercall, the device retries with state-unwritable', async () => {
    const host = await makeHost('unwritable', [rawRegion(0)]);
    await host.prepare('pmem0');
    const blocker = join(host.dir, 'not-a-directory');
    await writeFile(blocker, '');
    const store = new StateStore(join(blocker, 'xen-pmem'));
    const journal = new LedgerJournal(join(blocker, 'xen-pmem'));
    const { controller, log } = rig(host, {
      ports: { saveState: (state) => store.save(state), recordLedger: (steps) => journal.append(steps) },
    });
    await controller.start();

    const record = recordOf(controller, 'pmem0');
    assert.deepEqual([record.state, record.reason], ['retrying', 'state-unwritable']);
    assert.match(record.message, /not reported, because the exactly-once record could not be written: .*ENOTDIR/);
    assert.equal(host.regionAdds().length, 0, 'no pmem_add without the record on disk');
    assert.deepEqual(controller.status.snapshot().ledger, []);
    assert.ok(log.entries.some((entry) => entry.level === 'error' && entry.fields.reason === 'state-unwritable'));

    // A retry while the directory is still unwritable makes no call either.
    await waitFor('a retry', () => log.entries.filter((entry) => entry.fields.reason === 'state-unwritable' && entry.fields.device === 'pmem0').length >= 2);
    assert.equal(host.regionAdds().length, 0);
  });

  test('two devices whose regions overlap: only one is reported', async () => {
    // An inconsistent host: region1 starts 128 MiB into region0.
    const host = await makeHost('overlap-regions', [rawRegion(0, GiB4), rawRegion(1, GiB4 + 128n * MiB)], { mode: 'slow', delayMs: 5 });
    await host.prepare('pmem0');
    await host.prepare('pmem1');
    const { controller } = rig(host);
    await controller.start();

    const outcomes = ['pmem0', 'pmem1'].map((device) => stateOf(controller, device)).sort();
    assert.deepEqual(outcomes, [['rejected', 'overlaps-reported'], ['reported', 'reported']]);
    assert.equal(host.regionAdds().length, 1, 'the loser never reached the hypervisor');
    assert.equal(host.xenRegions().length, 1);
  });
});
