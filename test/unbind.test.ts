// The Dom0 stops mapping a region before it reports it: the driver of the block device's parent
// (the namespace in raw mode, the pfn device in fsdax mode) is unbound right before the add, bound
// again when Xen refuses the region, and unbound again when an operator binds a device Xen holds.
// The sysfs writes land in the fixture tree's driver files, one name a line.

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { MiB } from '../src/core/units.js';
import type { Config } from '../src/daemon/config.js';
import { Controller, type DaemonPorts } from '../src/daemon/controller.js';
import type { DeviceEvent } from '../src/daemon/ports.js';
import type { DeviceRecord } from '../src/daemon/state-store.js';
import { listPmemNamespaces, readPmemByBlockName } from '../src/sysfs/model.js';
import type { RegionSpec } from '../fixtures/sysfs-tree.js';
import {
  bridgeWithReport, makeDaemonHost, recordingLogger, testConfig, waitFor, type DaemonHost, type RecordingLogger, type XenEnvOptions, forgetXenInProcess,
} from '../fixtures/daemon-host.js';
import { hasCommand } from '../fixtures/images.js';

const skip = hasCommand('sfdisk') ? false : 'sfdisk is not installed (Debian package fdisk)';
const GiB4 = 0x1_0000_0000n;
const SIZE = 256n * MiB;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  forgetXenInProcess();
});

async function makeHost(label: string, mode: 'raw' | 'fsdax', xen: XenEnvOptions = {}): Promise<DaemonHost> {
  const regions: RegionSpec[] = [{ id: 0, start: GiB4, size: SIZE, namespaces: [{ id: 0, mode }] }];
  const host = await makeDaemonHost(`unbind-${label}`, { regions });
  cleanups.push(() => host.cleanup());
  host.useXenInProcess(xen);
  await host.prepare('pmem0');
  return host;
}

function rig(host: DaemonHost, options: { config?: Config; ports?: Partial<DaemonPorts> } = {}): { controller: Controller; log: RecordingLogger } {
  const log = recordingLogger();
  const controller = new Controller(options.config ?? testConfig(), host.ports({ log, ...options.ports }), null);
  cleanups.push(() => controller.stop());
  return { controller, log };
}

function recordOf(controller: Controller, device: string): DeviceRecord {
  const record = controller.status.snapshot().devices.find((each) => each.device === device);
  assert.ok(record, `a record for ${device}`);
  return record;
}

function event(action: string, subsystem: string, sysname: string, syspath = `/sys/devices/x/${sysname}`): DeviceEvent {
  return subsystem === 'block' ? { action, subsystem, sysname, syspath, devtype: 'disk' } : { action, subsystem, sysname, syspath };
}

describe('unbinding before the add', { skip }, () => {
  test('raw: namespace0.0 is unbound from nd_pmem before the add reaches Xen, and stays unbound once Xen holds it', async () => {
    const host = await makeHost('raw', 'raw');
    const real = host.openBridge();
    const unboundWhenAsked: string[][] = [];
    const { controller } = rig(host, {
      ports: { bridge: bridgeWithReport(real, (request) => { unboundWhenAsked.push(host.driverWrites('nd_pmem', 'unbind')); return real.report(request); }) },
    });
    await controller.start();
    assert.deepEqual(unboundWhenAsked, [['namespace0.0']], 'unbound before the hypercall');
    const record = recordOf(controller, 'pmem0');
    assert.deepEqual([record.state, record.reason], ['reported', 'reported']);
    assert.deepEqual(record.unbound, { device: 'namespace0.0', driver: 'nd_pmem' });
    assert.deepEqual(host.driverWrites('nd_pmem', 'bind'), []);
  });

  test('fsdax: the pfn device is what the block device hangs under, so pfn0.0 is unbound', async () => {
    const host = await makeHost('fsdax', 'fsdax');
    const { controller } = rig(host);
    await controller.start();
    assert.deepEqual(host.driverWrites('nd_pmem', 'unbind'), ['pfn0.0']);
    assert.deepEqual(recordOf(controller, 'pmem0').unbound, { device: 'pfn0.0', driver: 'nd_pmem' });
  });

  test('fsdax in a PV Dom0: rejected, the pfn device never unbound, nothing sent to Xen', async () => {
    const host = await makeHost('fsdax-pv', 'fsdax');
    const { controller } = rig(host, { ports: { xenGuestType: 'PV' } });
    await controller.start();
    const record = recordOf(controller, 'pmem0');
    assert.deepEqual([record.state, record.reason], ['rejected', 'fsdax-in-pv-dom0']);
    assert.deepEqual(host.driverWrites('nd_pmem', 'unbind'), []);
    assert.deepEqual(host.regionAdds(), []);
  });

  test('a refusal binds the driver again and says so', async () => {
    const host = await makeHost('refused', 'raw');
    const real = host.openBridge();
    const { controller } = rig(host, {
      ports: { bridge: bridgeWithReport(real, async () => ({ kind: 'rejected', errno: 22, reason: 'not-pmem', message: 'Xen answered XENPF_pmem add with EINVAL not_pmem' })) },
    });
    await controller.start();
    const record = recordOf(controller, 'pmem0');
    assert.deepEqual([record.state, record.reason], ['rejected', 'not-pmem']);
    assert.deepEqual(host.driverWrites('nd_pmem', 'unbind'), ['namespace0.0']);
    assert.deepEqual(host.driverWrites('nd_pmem', 'bind'), ['namespace0.0']);
    assert.match(record.message, /namespace0\.0 is bound to nd_pmem again, so the device can be set up anew$/);
    assert.equal(record.unbound, undefined);
  });

  test('the disk that comes back after a refusal is not sent again: one add, one unbind, the same rejection', async () => {
    const host = await makeHost('refused-once', 'raw');
    const real = host.openBridge();
    let adds = 0;
    const { controller } = rig(host, {
      ports: { bridge: bridgeWithReport(real, async () => { adds++; return { kind: 'rejected', errno: 28, reason: 'reserved-exhausted', message: 'Xen answered XENPF_pmem add with ENOSPC reserved_exhausted' }; }) },
    });
    await controller.start();
    // The bind brings the disk back: udev says so, and the daemon decides it again.
    await controller.handleEvent(event('add', 'block', 'pmem0'));
    await controller.handleEvent(event('change', 'block', 'pmem0'));
    await waitFor('the passes after the events', () => /not sent again/.test(recordOf(controller, 'pmem0').message));
    const record = recordOf(controller, 'pmem0');
    assert.deepEqual([record.state, record.reason], ['rejected', 'reserved-exhausted']);
    assert.equal(adds, 1, 'Xen was asked once');
    assert.deepEqual(host.driverWrites('nd_pmem', 'unbind'), ['namespace0.0']);
    assert.match(record.message, /: Xen answered XENPF_pmem add with ENOSPC reserved_exhausted; Xen refused this exact layout earlier in this run, so it is not sent again/);
  });

  test('Xen busy (EBUSY mapped): bound again, retried, and unbound again before the next add', async () => {
    const host = await makeHost('busy', 'raw', { mode: 'ebusy' });
    const { controller } = rig(host, { config: testConfig({ retry: { initialMs: 10, maxMs: 10 } }) });
    await controller.start();
    assert.deepEqual([recordOf(controller, 'pmem0').state, recordOf(controller, 'pmem0').reason], ['retrying', 'mapped']);
    host.useXenInProcess({ mode: 'pmem' });
    await waitFor('pmem0 reported after the retry', () => recordOf(controller, 'pmem0').state === 'reported');
    const unbinds = host.driverWrites('nd_pmem', 'unbind');
    assert.ok(unbinds.length >= 2 && unbinds.every((name) => name === 'namespace0.0'), unbinds.join(','));
    assert.equal(host.driverWrites('nd_pmem', 'bind').length, unbinds.length - 1, 'bound again after every refusal, not after the add Xen took');
  });

  test('a dry run never unbinds', async () => {
    const host = await makeHost('dry-run', 'raw');
    const { controller } = rig(host, { config: testConfig({ dryRun: true }) });
    await controller.start();
    assert.equal(recordOf(controller, 'pmem0').reason, 'dry-run');
    assert.deepEqual(host.driverWrites('nd_pmem', 'unbind'), []);
  });

  test('a device whose unbind fails is not sent to Xen: retrying, unbind-failed', async () => {
    const host = await makeHost('unbind-fails', 'raw');
    const { controller } = rig(host, {
      ports: { drivers: { unbind: async () => { throw new Error('cannot unbind nd_pmem from namespace0.0 (writing /sys/bus/nd/drivers/nd_pmem/unbind): EACCES'); }, unbindAgain: async () => {}, bind: async () => {} } },
    });
    await controller.start();
    const record = recordOf(controller, 'pmem0');
    assert.deepEqual([record.state, record.reason], ['retrying', 'unbind-failed']);
    assert.match(record.message, /the Dom0 must stop mapping the region first, and cannot unbind nd_pmem from namespace0\.0/);
    assert.deepEqual(host.regionAdds(), []);
  });
});

describe('after the add', { skip }, () => {
  test('the block device goes away with the unbind: the device stays reported, with a note, and no error', async () => {
    const host = await makeHost('gone', 'raw');
    let unbound = false;
    const { controller, log } = rig(host, {
      // After the unbind the kernel removes pmem0; its namespace stays.
      ports: { readByBlockName: async (name) => (unbound ? null : readPmemByBlockName(host.roots, name)) },
    });
    await controller.start();
    unbound = true;
    await controller.handleEvent(event('remove', 'block', 'pmem0'));
    await waitFor('the removal pass', () => (recordOf(controller, 'pmem0').notes ?? []).length > 0);
    const record = recordOf(controller, 'pmem0');
    assert.deepEqual([record.state, record.reason], ['reported', 'reported']);
    assert.deepEqual(record.notes, ['Xen holds this region; the Dom0 no longer sees the device (namespace0.0 unbound from nd_pmem before the report)']);
    assert.ok(!log.entries.some((entry) => entry.level === 'error'), 'no error: the daemon did this itself');
  });

  test('an operator binds the namespace again: it is unbound again at once, with an error that says why', async () => {
    const host = await makeHost('rebound', 'raw');
    const { controller, log } = rig(host);
    await controller.start();
    assert.deepEqual(host.driverWrites('nd_pmem', 'unbind'), ['namespace0.0']);
    controller.handleEvent(event('bind', 'nd', 'namespace0.0', host.namespaceOf('pmem0').namespaceDir));
    await waitFor('the second unbind', () => host.driverWrites('nd_pmem', 'unbind').length === 2);
    await waitFor('the error line', () => log.entries.some((entry) => entry.fields.reason === 'bound-while-held'));
    const line = log.entries.find((entry) => entry.fields.reason === 'bound-while-held')!;
    assert.equal(line.level, 'error');
    assert.match(line.message, /^pmem0: namespace0\.0 was bound to nd_pmem again, but Xen holds its region and refuses the Dom0 every frame of it, so the driver's mappings would fail: unbound it again/);
    assert.equal(host.regionAdds().length, 1, 'nothing is sent again');
  });

  test('a bind event for a device Xen does not hold is left alone', async () => {
    const host = await makeHost('not-held', 'raw');
    await host.blank('pmem0');
    const { controller } = rig(host);
    await controller.start();
    controller.handleEvent(event('bind', 'nd', 'namespace0.0', host.namespaceOf('pmem0').namespaceDir));
    await waitFor('the pass of the bind event', () => recordOf(controller, 'pmem0').state === 'absent');
    assert.deepEqual(host.driverWrites('nd_pmem', 'unbind'), []);
  });

  test('a restart whose coldplug finds the namespace without its block device keeps the record reported', async () => {
    const host = await makeHost('restart', 'raw');
    const first = rig(host);
    await first.controller.start();
    await first.controller.stop();
    const [model] = listPmemNamespaces(host.roots);
    const { loadPreviousRun } = await import('../src/daemon/state-store.js');
    const previous = await loadPreviousRun(host.stateDir);
    const log = recordingLogger();
    // The namespace is there, unbound: no block device under it.
    const second = new Controller(testConfig(), host.ports({
      log,
      listNamespaces: async () => [{ ...model!, block: null, unsupported: { code: 'no-block-device', message: 'namespace0.0 has no block device' } }],
      readByBlockName: async () => null,
    }), previous.state, previous.ledgerKnown);
    cleanups.push(() => second.stop());
    await second.start();
    const devices = second.status.snapshot().devices.map((each) => [each.device, each.state, each.reason]);
    assert.deepEqual(devices, [['pmem0', 'reported', 'reported']]);
    assert.equal(host.regionAdds().length, 1);
  });
});
