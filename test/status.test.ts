// `xen-pmem status` with Xen's view beside the daemon's: the region Xen holds for each device,
// every difference between the two, and what it says when Xen cannot be asked. The daemon runs
// in process over a fixture host; the command asks the test hypervisor itself, as it asks Xen.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { afterEach, describe, test } from 'node:test';

import type { PortOpening } from '../src/xen/ports.js';
import { forgetXenInProcess } from '../fixtures/daemon-host.js';
import { commandOnHost, reportedHost } from './helpers/reported-host.js';
import { hasCommand } from '../fixtures/images.js';

const skip = hasCommand('sfdisk') ? false : 'sfdisk is not installed (Debian package fdisk)';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  forgetXenInProcess();
});

interface StatusJson {
  daemon: { running: boolean };
  xen: { available: boolean; xenVersion?: string; reason?: string; message?: string; regions?: { pfns: Record<string, string>; freeFrames: string }[]; unexplained?: string[] };
  devices: { device: string; state: string; xen?: { holds: boolean; region?: { pfns: Record<string, string> }; differences: string[] } }[];
}

describe('xen-pmem status beside Xen', { skip }, () => {
  test('agreement: the reported device is held by Xen with its six PFNs, the blank one is not, no difference', async () => {
    const host = await reportedHost('status-agree', cleanups);
    const result = await commandOnHost(host, 'status', ['--json']);
    assert.equal(result.stderr, '');
    assert.equal(result.code, 1, 'the daemon is not running: exit 1, and the state is still shown');
    const json = JSON.parse(result.stdout) as StatusJson;
    assert.deepEqual([json.xen.available, json.xen.xenVersion, json.xen.unexplained], [true, '4.17.7-pmem', []]);
    const [pmem0, pmem1] = json.devices;
    assert.deepEqual([pmem0!.device, pmem0!.state, pmem0!.xen?.holds, pmem0!.xen?.differences], ['pmem0', 'reported', true, []]);
    assert.deepEqual(pmem0!.xen?.region?.pfns, { spfn: '0x100000', epfn: '0x110000', rsvSpfn: '0x100200', rsvEpfn: '0x100e00', dataSpfn: '0x100e00', dataEpfn: '0x10fe00' });
    assert.deepEqual([pmem1!.device, pmem1!.state, pmem1!.xen?.holds, pmem1!.xen?.differences], ['pmem1', 'absent', false, []]);

    const text = (await commandOnHost(host, 'status', [])).stdout;
    assert.match(text, /Xen 4\.17\.7-pmem holds 1 pmem region/);
    assert.match(text, /pmem0 .*\n(.*\n)*  Xen holds spfn=0x100000 epfn=0x110000 rsv_spfn=0x100200 rsv_epfn=0x100e00 data_spfn=0x100e00 data_epfn=0x10fe00\n/);
    assert.match(text, /tables in 1 \+ 1 \+ 1 chunks of 2 MiB; 0xf000 data frames free/);
    assert.doesNotMatch(text, /DIFFERENCE/);
  });

  test('differences: a device said reported that Xen does not hold, and a region Xen holds that no device explains', async () => {
    const host = await reportedHost('status-differ', cleanups);
    // A reboot of Xen alone (the daemon's state survived), and a region someone else reported.
    await rm(host.xenStatePath);
    const other = { spfn: 0x200000n, epfn: 0x210000n, rsvSpfn: 0x200200n, rsvEpfn: 0x200e00n, dataSpfn: 0x200e00n, dataEpfn: 0x210000n };
    const bridge = host.openBridge();
    assert.equal((await bridge.report(other)).kind, 'reported');
    bridge.close();

    const json = JSON.parse((await commandOnHost(host, 'status', ['--json'])).stdout) as StatusJson;
    assert.deepEqual(json.devices[0]!.xen?.differences, ['the daemon says pmem0 is reported, but Xen does not hold [0x100000, 0x110000)']);
    assert.deepEqual(json.xen.unexplained, ['Xen holds [0x200000, 0x210000) (spfn=0x200000 epfn=0x210000 rsv_spfn=0x200200 rsv_epfn=0x200e00 data_spfn=0x200e00 data_epfn=0x210000), which no device of the daemon explains']);
    const text = (await commandOnHost(host, 'status', [])).stdout;
    assert.match(text, /  Xen holds no region of this device\n  DIFFERENCE: the daemon says pmem0 is reported, but Xen does not hold \[0x100000, 0x110000\)/);
    assert.match(text, /\nDIFFERENCE: Xen holds \[0x200000, 0x210000\)/);
  });

  test('Xen holds the device\'s region with other frames: a difference naming both', async () => {
    const host = await reportedHost('status-other-frames', cleanups);
    await rm(host.xenStatePath);
    const bridge = host.openBridge();
    assert.equal((await bridge.report({ spfn: 0x100000n, epfn: 0x110000n, rsvSpfn: 0x100200n, rsvEpfn: 0x101000n, dataSpfn: 0x101000n, dataEpfn: 0x110000n })).kind, 'reported');
    bridge.close();
    const json = JSON.parse((await commandOnHost(host, 'status', ['--json'])).stdout) as StatusJson;
    assert.match(json.devices[0]!.xen!.differences[0]!, /^Xen holds \[0x100000, 0x110000\) with other frames than the device's layout: Xen spfn=0x100000 .*rsv_epfn=0x101000 .*, device spfn=0x100000 .*rsv_epfn=0x100e00/);
    assert.deepEqual(json.xen.unexplained, []);
  });

  test('no daemon state at all: Xen\'s view is still shown', async () => {
    const host = await reportedHost('status-no-state', cleanups);
    await rm(host.stateDir, { recursive: true });
    const result = await commandOnHost(host, 'status', []);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /^xen-pmemd is NOT running, and left no state/);
    assert.match(result.stdout, /Xen 4\.17\.7-pmem holds 1 pmem region\n/);
    assert.match(result.stdout, /DIFFERENCE: Xen holds \[0x100000, 0x110000\) .* which no device of the daemon explains/);
  });

  test('outside a Dom0: Xen\'s view is unavailable, and why', async () => {
    const host = await reportedHost('status-not-dom0', cleanups);
    const unavailable = async (): Promise<PortOpening> => ({ kind: 'unavailable', reason: 'not-dom0', message: 'there is no /dev/xen/privcmd: this is not a Xen Dom0 (or xen-privcmd is not loaded)' });
    const json = JSON.parse((await commandOnHost(host, 'status', ['--json'], unavailable)).stdout) as StatusJson;
    assert.deepEqual(json.xen, { available: false, reason: 'not-dom0', message: 'there is no /dev/xen/privcmd: this is not a Xen Dom0 (or xen-privcmd is not loaded)' });
    assert.equal(json.devices[0]!.xen, undefined);
    const text = (await commandOnHost(host, 'status', [], unavailable)).stdout;
    assert.match(text, /Xen's view is unavailable: there is no \/dev\/xen\/privcmd: this is not a Xen Dom0/);
  });

  test('on upstream Xen: unavailable, with the version Xen gives', async () => {
    const host = await reportedHost('status-upstream', cleanups);
    host.useXenInProcess({ mode: 'dom0-console' });
    const json = JSON.parse((await commandOnHost(host, 'status', ['--json'])).stdout) as StatusJson;
    assert.equal(json.xen.available, false);
    assert.equal(json.xen.reason, 'enosys');
    assert.match(json.xen.message!, /^Xen 4\.20\.4 does not implement XENPF_pmem \(platform op 67\)/);
  });
});
