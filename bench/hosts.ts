// Fixture hosts at scale for the benchmarks: N pmem namespaces of 1 TiB each (sparse image files,
// so a thousand of them cost a few MiB), every other one prepared, and a sysfs tree that matches.
// Built on the test fixtures (makeDaemonHost), not beside them.
//
// Preparing: the first device goes through what `xen-pmem setup` runs (planner, the real sfdisk,
// the super block writer, read-back: DaemonHost.prepare). Every further prepared device is a sparse
// copy of it with a super block of its own (fresh reservation UUID, both copies re-encoded by the
// project's encoder), because sfdisk ends each write with a machine-wide sync(): on a shared
// machine that is a quarter of a second per device, minutes for a thousand, and it would time
// other people's disks rather than this fixture.

import { mkdirSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';

import { encodeSuperblock, FLAG_BACKUP_COPY } from '../src/core/superblock.js';
import { TiB } from '../src/core/units.js';
import { openDevice } from '../src/io/device.js';
import { superblockFor } from '../src/io/layout-writer.js';
import type { RegionSpec } from '../fixtures/sysfs-tree.js';
import { makeDaemonHost, type DaemonHost, type PreparedDevice } from '../fixtures/daemon-host.js';
import { copySparseImage } from '../fixtures/images.js';
import { setPresentIn } from './presence.js';

/** Where the first region starts: 4 GiB, above the low memory a real machine has there. */
export const FIRST_REGION_START = 0x1_0000_0000n;
export const DEVICE_BYTES = 1n * TiB;

export interface BenchHost {
  host: DaemonHost;
  /** Block device names, pmem0 … pmem{N-1}. */
  devices: string[];
  prepared: string[];
  blank: string[];
  /** The /dev node of each device: a sparse image file. */
  devPaths: string[];
  /** Region start PFN → device name, to tell which device a pmem_add was for. */
  deviceBySpfn: Map<bigint, string>;
  /** Whether namespace i is listed on the nd bus (see showFirst). */
  visible: boolean[];
}

/**
 * Fixtures go under a tmpfs when one is given: pmem is memory, and /run (where the daemon keeps
 * its state) is a tmpfs on a real Dom0; a disk-backed /tmp would time the disk instead.
 */
export function useScratchRoot(root: string | null): void {
  if (root === null) return;
  mkdirSync(root, { recursive: true });
  process.env.TMPDIR = root;
}

export function regionSpecs(count: number, bytes: bigint = DEVICE_BYTES): RegionSpec[] {
  return Array.from({ length: count }, (_, id) => ({
    id,
    start: FIRST_REGION_START + BigInt(id) * bytes,
    size: bytes,
    namespaces: [{ id: 0, mode: 'raw' as const }],
  }));
}

export async function makeBenchHost(label: string, count: number, bytes: bigint = DEVICE_BYTES): Promise<BenchHost> {
  const regions = regionSpecs(count, bytes);
  const host = await makeDaemonHost(`bench-${label}`, { regions });
  const devices = regions.map((region) => `pmem${region.id}`);
  const prepared = devices.filter((_, index) => index % 2 === 0);
  const blank = devices.filter((_, index) => index % 2 === 1);
  for (const name of blank) await host.blank(name);
  const [first, ...rest] = prepared;
  if (first !== undefined) {
    const template = await host.prepare(first);
    for (const name of rest) await cloneLayout(template, host.devPath(name));
  }
  const deviceBySpfn = new Map(regions.map((region) => [region.start >> 12n, `pmem${region.id}`]));
  return { host, devices, prepared, blank, devPaths: devices.map((name) => host.devPath(name)), deviceBySpfn, visible: devices.map(() => true) };
}

/**
 * Makes a block device vanish from /sys/class/block, or come back, as a hot-unplug and replug
 * do for the daemon's lookups by name.
 */
export async function setPresent(host: DaemonHost, device: string, present: boolean): Promise<void> {
  setPresentIn(host.roots.sysRoot, device, present);
}

/** A sparse copy of a prepared image with a super block of its own (new UUID, both copies). */
async function cloneLayout(template: PreparedDevice, devPath: string): Promise<void> {
  copySparseImage(template.devPath, devPath);
  const superblock = superblockFor(template.plan);
  const device = await openDevice(devPath, 'write');
  try {
    await device.write(template.plan.backupOffset, encodeSuperblock({ ...superblock, flags: superblock.flags | FLAG_BACKUP_COPY }));
    await device.write(template.plan.primaryOffset, encodeSuperblock(superblock));
  } finally {
    await device.close();
  }
}

/**
 * Shows the daemon only the first `count` namespaces on the nd bus: one 1024-device tree serves
 * every N, since the daemon enumerates /sys/bus/nd/devices and looks nothing else up by listing.
 */
export async function showFirst(bench: BenchHost, count: number): Promise<void> {
  const busDevices = join(bench.host.roots.sysRoot, 'bus', 'nd', 'devices');
  for (let id = 0; id < bench.devices.length; id++) {
    const visible = join(busDevices, `namespace${id}.0`);
    const hidden = join(busDevices, `.hidden-namespace${id}.0`);
    const want = id < count;
    if (bench.visible[id] === want) continue;
    await rename(want ? hidden : visible, want ? visible : hidden);
    bench.visible[id] = want;
  }
}
