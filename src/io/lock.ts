// The block-device locking convention of systemd ("Locking Block Device Access"), which udev and
// util-linux follow: a program that writes a partition table or a super block holds an exclusive
// BSD lock (flock) on the whole-disk device node while it does, and a program that wants a
// consistent view takes a shared one; udev takes a shared one before it probes, and postpones
// the event while the disk is locked. `xen-pmem setup` and `wipe` hold the exclusive lock across
// the partition table and both super block copies; the daemon takes the shared one around its
// read of a device, so neither it nor udev ever sees half a layout.
//
// Every attempt is non-blocking (LOCK_NB) and the waits between attempts are timers, so a
// locked device never holds up the daemon's event loop; after `timeoutMs` the caller gets a
// DeviceLockedError and decides (the daemon retries later, a command fails with a message).
// Regular files (the image files of tests and of trying things out) are locked the same way.

import { closeSync, constants, existsSync, fstatSync, openSync, readFileSync, realpathSync } from 'node:fs';
import { constants as os } from 'node:os';
import { dirname, join } from 'node:path';

import { describeError } from '../core/errno.js';
import { openDevice } from './device.js';
import type { DeviceReader, FlockPort, LockMode } from './ports.js';

const EWOULDBLOCK = os.errno.EWOULDBLOCK;

/** How long to try, and how often: the first pause, doubled up to the largest, until the limit. */
export interface LockPatience {
  firstDelayMs: number;
  maxDelayMs: number;
  timeoutMs: number;
}

/**
 * The daemon's read: a setup takes well under a second; a device still locked after this is
 * decided again later (state retrying, reason device-locked) and at the event its unlock brings.
 */
export const READER_PATIENCE: LockPatience = { firstDelayMs: 10, maxDelayMs: 250, timeoutMs: 5000 };
/** setup and wipe: udev's probe and the daemon's read hold their shared locks for milliseconds. */
export const WRITER_PATIENCE: LockPatience = { firstDelayMs: 10, maxDelayMs: 250, timeoutMs: 10_000 };

export class DeviceLockedError extends Error {
  readonly code = 'device-locked';
}

export interface DeviceLock {
  /** The node the lock is on: the whole disk of the path asked for. */
  readonly path: string;
  readonly mode: LockMode;
  /** Attempts made; more than one means someone else held the disk. */
  readonly attempts: number;
  readonly waitedMs: number;
  /** Closes the descriptor, which releases the lock. */
  release(): Promise<void>;
}

const defaultSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Locks the whole disk `path` belongs to (the file itself for a regular file), trying again with
 * growing pauses while another program holds a conflicting lock.
 */
export async function lockDevice(
  path: string,
  mode: LockMode,
  flock: FlockPort,
  patience: LockPatience,
  sleep: (ms: number) => Promise<void> = defaultSleep,
): Promise<DeviceLock> {
  const target = wholeDiskOf(path);
  let fd: number;
  try {
    // Read-only: the lock needs no more, and closing it raises no udev change event.
    fd = openSync(target, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw new Error(`cannot open ${target} to lock it: ${describeError(error)}`);
  }
  const started = Date.now();
  let delay = patience.firstDelayMs;
  for (let attempts = 1; ; attempts++) {
    const errno = flock.tryLock(fd, mode);
    if (errno === 0) {
      let held = true;
      return {
        path: target,
        mode,
        attempts,
        waitedMs: Date.now() - started,
        async release() {
          if (held) closeSync(fd);
          held = false;
        },
      };
    }
    const waited = Date.now() - started;
    if (errno !== EWOULDBLOCK || waited >= patience.timeoutMs) {
      closeSync(fd);
      if (errno !== EWOULDBLOCK) throw new Error(`cannot lock ${target}: flock failed with errno ${errno}`);
      throw new DeviceLockedError(`${target} is locked by another program (a partitioning or formatting tool, udev, another xen-pmem) for more than ${patience.timeoutMs / 1000} s`);
    }
    await sleep(Math.min(delay, Math.max(1, patience.timeoutMs - waited)));
    delay = Math.min(delay * 2, patience.maxDelayMs);
  }
}

/** A device reader that holds a shared lock on its disk from before the first read until close. */
export async function openLockedReader(path: string, flock: FlockPort, patience: LockPatience = READER_PATIENCE): Promise<DeviceReader> {
  const lock = await lockDevice(path, 'shared', flock, patience);
  let reader: DeviceReader;
  try {
    reader = await openDevice(path, 'read');
  } catch (error) {
    await lock.release();
    throw error;
  }
  return {
    path: reader.path,
    size: reader.size,
    sectorSize: reader.sectorSize,
    isBlockDevice: reader.isBlockDevice,
    get bytesRead() { return reader.bytesRead; },
    read: (offset, length) => reader.read(offset, length),
    async close() {
      try {
        await reader.close();
      } finally {
        await lock.release();
      }
    },
  };
}

/**
 * The whole-disk node of a block device (a partition's disk, `/dev/block/MAJ:MIN`), or `path`
 * itself for a disk, a regular file or anything sysfs cannot place.
 */
export function wholeDiskOf(path: string, sysRoot = '/sys', devRoot = '/dev'): string {
  let rdev: bigint;
  try {
    const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const info = fstatSync(fd, { bigint: true });
      if (!info.isBlockDevice()) return path;
      rdev = info.rdev;
    } finally {
      closeSync(fd);
    }
  } catch {
    return path;
  }
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  const parent = parentDiskOf(sysRoot, `${major}:${minor}`);
  return parent === null ? path : join(devRoot, 'block', parent);
}

/** `MAJ:MIN` of the disk a partition `MAJ:MIN` belongs to, from sysfs; null for a disk. */
export function parentDiskOf(sysRoot: string, device: string): string | null {
  const node = join(sysRoot, 'dev', 'block', device);
  if (!existsSync(join(node, 'partition'))) return null;
  try {
    return readFileSync(join(dirname(realpathSync(node)), 'dev'), 'utf8').trim();
  } catch {
    return null;
  }
}
