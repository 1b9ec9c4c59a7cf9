// A guest gets persistent memory, in two boots of the patched hypervisor over the same NVDIMM
// image. In each, the daemon (installed from the checkout, started by systemd) reports the
// prepared NVDIMM and the Dom0's toolstack runs PVH guests (the lab's kernel and a busybox
// initramfs, lab/domu.ts) that `xen-pmem attach` gives 1 GiB of the data area at 4 GiB.
// First boot: guest A is created paused and given the range; while A holds it, a second guest is
// refused the same frames and the Dom0 cannot map them as I/O frames; A writes a pattern to its
// /dev/pmem0 and powers off; the range is free again, and the second guest is given the whole
// data area. Second boot: a guest without pmem boots (the time to compare with), then guest C is
// given the same 1 GiB and reads the pattern back. The host checks the image file.
//
// Settings (lab.env): LAB_GUEST_BOOT (first or second), LAB_DOMU_KERNEL, LAB_DOMU_RAMDISK,
// LAB_GUEST_BYTES. Result: guest-pmem.json.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';

import { openXencall } from '../../src/native/libxencall.js';
import { decodeHeader, encodeAssign, reasonCodeOf } from '../../src/xen/xenpf-pmem.js';
import type { CommandRecord, StatusJson } from './daemon-results.js';
import { UNIT, XEN_PMEM, installProduct, run, runOk, statusJson, waitForDeviceState } from './daemon-dom0.js';
import { mapIoFrames, type FrameMapping } from './privcmd-map.js';
import { startToolstack, type PvGuestStep } from './pv-guest.js';
import { log, phaseRunner, putResult, waitUntil } from './results.js';

export const GUEST_PMEM_RESULT = 'guest-pmem.json';
const DEVICE = 'pmem0';
const GUEST_ADDRESS = '0x100000000';

/** One guest's life as the Dom0 saw it. */
export interface GuestRecord {
  name: string;
  mode: 'write' | 'read' | 'plain' | 'none';
  create: CommandRecord | null;
  attach: CommandRecord | null;
  /** From `xl unpause` (or `xl create` without pmem) to the guest's `done` line. */
  runMs: number | null;
  /** Its console lines that start `xen-pmem guest:`. */
  console: string[];
}

/** An assign sent straight through libxencall, and Xen's answer. */
export interface RawAssign {
  label: string;
  frames: string;
  rc: number;
  errno: number;
  reason: string;
  wallMs: number;
}

export interface GuestPmemResult {
  phase: string;
  boot: string;
  /** The device's layout as `xen-pmem status --json` shows it. */
  layout: NonNullable<StatusJson['devices'][number]['layout']> | null;
  toolstack: PvGuestStep | null;
  guests: GuestRecord[];
  /** A second guest asking for frames the first holds. */
  heldElsewhere: CommandRecord | null;
  /** The Dom0 mapping the first guest's frames as I/O frames. */
  ioMapping: FrameMapping[];
  /** Xen's owners of the data range (status --json), at each step, by label. */
  owners: Record<string, Array<{ spfn: string; epfn: string; domid: number }> | null>;
  /**
   * The second guest given the whole data area once the first was gone, by one assign sent here
   * through libxencall so that its time is Xen's alone (xen-pmem attach adds Node's start-up).
   */
  wholeArea: RawAssign | null;
  /** Requests Xen must refuse, sent while the first guest holds its range. */
  refusals: RawAssign[];
  kernelTrouble: string[];
  failure?: { phase: string; message: string };
}

const result: GuestPmemResult = {
  phase: 'start', boot: process.env.LAB_GUEST_BOOT ?? 'first', layout: null, toolstack: null, guests: [], heldElsewhere: null, ioMapping: [], owners: {}, wholeArea: null, refusals: [], kernelTrouble: [],
};
const phase = phaseRunner(GUEST_PMEM_RESULT, result);
const KERNEL = process.env.LAB_DOMU_KERNEL ?? '';
const RAMDISK = process.env.LAB_DOMU_RAMDISK ?? '';
const GUEST_BYTES = process.env.LAB_GUEST_BYTES ?? String(1024 * 1024 * 1024);

function consoleLog(name: string): string {
  return `/var/log/xen/console/guest-${name}.log`;
}

function guestLines(name: string): string[] {
  const path = consoleLog(name);
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').map((line) => line.trim()).filter((line) => line.startsWith('xen-pmem guest:')) : [];
}

function owners(label: string): void {
  const { status } = statusJson();
  const regions = (status.xen as { regions?: Array<{ owners?: Array<{ spfn: string; epfn: string; domid: number }> }> } | undefined)?.regions;
  result.owners[label] = regions?.[0]?.owners ?? null;
}

function domid(name: string): number | null {
  const record = run('xl', ['domid', name]);
  return record.status === 0 ? Number(record.stdout.trim()) : null;
}

/**
 * The guest's configuration: PVH, the lab's kernel, and an initrd that begins with the ACPI
 * tables (`xen-pmem guest-tables`) that tell it about pmem at 4 GiB.
 */
function createGuest(guest: GuestRecord, paused: boolean): void {
  const config = `/run/${guest.name}.cfg`;
  const extra = ['console=hvc0', 'rdinit=/init', `xen_pmem_guest=${guest.mode}`].join(' ');
  writeFileSync(config, [
    `name = "${guest.name}"`, 'type = "pvh"', `kernel = "${KERNEL}"`, `ramdisk = "${RAMDISK}"`,
    'memory = 256', 'vcpus = 1', `extra = "${extra}"`, 'on_poweroff = "destroy"', 'on_crash = "preserve"', '',
  ].join('\n'));
  guest.create = runOk('xl', ['create', ...(paused ? ['-p'] : []), config], 180_000);
}

/** Waits for the guest's `done` line and for the toolstack to have destroyed it. */
async function runToEnd(guest: GuestRecord, started: number): Promise<void> {
  try {
    await waitUntil(`${guest.name} to say done`, () => guestLines(guest.name).some((line) => line.startsWith('xen-pmem guest: done')), 180_000, 200);
    guest.runMs = Date.now() - started;
    await waitUntil(`${guest.name} to be gone`, () => domid(guest.name) === null, 60_000, 500);
  } finally {
    guest.console = guestLines(guest.name);
    // The whole console beside the result, for when the guest went wrong.
    if (existsSync(consoleLog(guest.name))) putResult(`console-${guest.name}.log`, readFileSync(consoleLog(guest.name), 'utf8'));
  }
}

/** `xen-pmem attach` of the guests' range, as the operator types it. */
function attach(name: string): CommandRecord {
  return run(XEN_PMEM, ['attach', '--size', GUEST_BYTES, '--at', GUEST_ADDRESS, name, DEVICE]);
}

/** One assign sent here through libxencall, timed: Xen's answer and nothing of xen-pmem's own. */
async function assignRaw(label: string, frames: { mfn: bigint; gfn: bigint; nr: bigint; domid: number }): Promise<RawAssign> {
  const opened = openXencall();
  if (opened.kind !== 'opened') throw new Error(`libxencall: ${opened.message}`);
  try {
    const started = Date.now();
    const answer = await opened.port.platformOp(encodeAssign(frames));
    const wallMs = Date.now() - started;
    const reason = answer.after.length >= 16 ? reasonCodeOf(decodeHeader(answer.after).reason) : 'none';
    log(`assign (${label}) of ${frames.nr} frames from ${frames.mfn.toString(16)} to d${frames.domid}: rc ${answer.rc} errno ${answer.errno} ${reason} in ${wallMs} ms`);
    return { label, frames: String(frames.nr), rc: answer.rc, errno: answer.errno, reason, wallMs };
  } finally {
    opened.port.close();
  }
}

function domidOf(name: string): number {
  return Number(runOk('xl', ['domid', name]).stdout.trim());
}

async function main(): Promise<void> {
  try {
    await phase('daemon', async () => {
      installProduct();
      runOk('systemctl', ['enable', '--now', UNIT], 180_000);
      await waitForDeviceState(DEVICE, ['reported'], 180_000);
      result.layout = statusJson().status.devices.find((device) => device.device === DEVICE)?.layout ?? null;
      owners('reported');
    });

    await phase('toolstack', () => {
      mkdirSync(dirname(consoleLog('x')), { recursive: true });
      result.toolstack = startToolstack();
      if (!result.toolstack.ok) throw new Error(`toolstack: ${result.toolstack.detail}`);
    });

    if (result.boot === 'first') {
      const a: GuestRecord = { name: 'pmem-a', mode: 'write', create: null, attach: null, runMs: null, console: [] };
      const b: GuestRecord = { name: 'pmem-b', mode: 'none', create: null, attach: null, runMs: null, console: [] };
      result.guests.push(a, b);
      await phase('attach', () => {
        createGuest(a, true);
        a.attach = attach(a.name);
        if (a.attach.status !== 0) throw new Error(`attach to ${a.name}: ${a.attach.stderr.trim()}`);
        owners('pmem-a holds');
      });
      await phase('refusals', async () => {
        createGuest(b, true);
        result.heldElsewhere = attach(b.name);
        const dataSpfn = BigInt(result.layout!.pfns.dataSpfn!);
        result.ioMapping = mapIoFrames([dataSpfn, dataSpfn + 1n, dataSpfn + 0x3ffffn]);
        // What no guest may be given, or no guest may take: each must be refused with its reason.
        const pfns = result.layout!.pfns;
        const free = BigInt(pfns.dataEpfn!) - 0x200n;
        const bId = domidOf(b.name);
        result.refusals = [
          await assignRaw('the reserved range', { mfn: BigInt(pfns.rsvSpfn!), gfn: 0x200000n, nr: 0x200n, domid: bId }),
          await assignRaw('the region\'s first frames (GPT, super block)', { mfn: BigInt(pfns.spfn!), gfn: 0x200000n, nr: 0x200n, domid: bId }),
          await assignRaw('past the data range\'s end', { mfn: free, gfn: 0x200000n, nr: 0x400n, domid: bId }),
          await assignRaw('free frames to the Dom0', { mfn: free, gfn: 0x200000n, nr: 0x200n, domid: 0 }),
          await assignRaw('free frames over the guest\'s RAM', { mfn: free, gfn: 0x1000n, nr: 0x200n, domid: bId }),
          await assignRaw('free frames to no domain', { mfn: free, gfn: 0x200000n, nr: 0x200n, domid: 0x7000 }),
        ];
      });
      await phase('write', async () => {
        const started = Date.now();
        runOk('xl', ['unpause', a.name]);
        await runToEnd(a, started);
        owners('pmem-a gone');
      });
      await phase('next-guest', async () => {
        const pfns = result.layout!.pfns;
        result.wholeArea = await assignRaw('the whole data area', {
          mfn: BigInt(pfns.dataSpfn!), gfn: BigInt(GUEST_ADDRESS) >> 12n, nr: BigInt(pfns.dataEpfn!) - BigInt(pfns.dataSpfn!), domid: domidOf(b.name),
        });
        owners('pmem-b holds');
        runOk('xl', ['destroy', b.name]);
        await waitUntil(`${b.name} to be gone`, () => domid(b.name) === null, 60_000, 500);
        owners('pmem-b gone');
      });
    } else {
      const plain: GuestRecord = { name: 'plain', mode: 'plain', create: null, attach: null, runMs: null, console: [] };
      const c: GuestRecord = { name: 'pmem-c', mode: 'read', create: null, attach: null, runMs: null, console: [] };
      result.guests.push(plain, c);
      await phase('plain', async () => {
        const started = Date.now();
        createGuest(plain, false);
        await runToEnd(plain, started);
      });
      await phase('read', async () => {
        createGuest(c, true);
        c.attach = attach(c.name);
        if (c.attach.status !== 0) throw new Error(`attach to ${c.name}: ${c.attach.stderr.trim()}`);
        owners('pmem-c holds');
        const started = Date.now();
        runOk('xl', ['unpause', c.name]);
        await runToEnd(c, started);
        owners('pmem-c gone');
      });
    }
  } catch (error) {
    result.failure = { phase: result.phase, message: (error as Error).stack ?? String(error) };
    throw error;
  } finally {
    result.kernelTrouble = run('dmesg', []).stdout.split('\n').filter((line) => /soft lockup|rcu.*stall|BUG:|Oops/i.test(line));
    putResult(GUEST_PMEM_RESULT, result);
  }
  result.phase = 'done';
  putResult(GUEST_PMEM_RESULT, result);
  log('guest-pmem done');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
