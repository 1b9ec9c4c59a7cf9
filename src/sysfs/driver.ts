// The one place sysfs is written: the nd bus's driver binding of a pmem block device's parent
// device (the namespace in raw mode, the pfn device in fsdax mode). Xen refuses a region any
// domain still maps, and the pmem driver maps the whole namespace while it is bound, so the daemon
// unbinds it right before the add, and binds it again when Xen refuses the region.

import { closeSync, openSync, readlinkSync, writeSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

import { messageOf } from '../core/errno.js';
import type { SysfsRoots } from './types.js';

/** A parent device and the driver it was bound to. */
export interface DriverBinding {
  device: string;
  driver: string;
}

function driverFile(roots: SysfsRoots, driver: string, file: 'bind' | 'unbind'): string {
  return join(roots.sysRoot, 'bus', 'nd', 'drivers', driver, file);
}

/**
 * The block device's parent and its driver, as sysfs links them now: the block device's `device`
 * link names the parent (the same device as the realpath of /sys/block/<name>/device), and the
 * parent's `driver` link names its driver. `syspath` is the block device's real sysfs directory
 * (the model's), so two readlink(2) calls do what two realpath walks over the tree did.
 */
export function parentBinding(syspath: string): DriverBinding {
  const parent = resolve(syspath, readlinkSync(join(syspath, 'device')));
  return { device: basename(parent), driver: basename(readlinkSync(join(parent, 'driver'))) };
}

/**
 * One write(2) of the name; the kernel compares it with sysfs_streq, so the newline is fine, and
 * appending keeps a fixture tree's file a record of every write. Synchronous, as the sysfs reads
 * are (src/sysfs/model.ts): the kernel answers at once, and the promise API's three thread-pool
 * round trips (open, write, close) per device made a coldplug of 512 reports 0.7 s slower.
 */
function write(path: string, device: string, what: string): void {
  let fd: number | null = null;
  try {
    fd = openSync(path, 'a');
    writeSync(fd, `${device}\n`);
  } catch (error) {
    throw new Error(`cannot ${what} ${device} (writing ${path}): ${messageOf(error)}`);
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

export function sysfsDrivers(roots: SysfsRoots) {
  return {
    async unbind(block: { name: string; syspath: string }): Promise<DriverBinding> {
      let binding: DriverBinding;
      try {
        binding = parentBinding(block.syspath);
      } catch (error) {
        throw new Error(`cannot find the driver of ${block.name}'s parent device: ${messageOf(error)}`);
      }
      write(driverFile(roots, binding.driver, 'unbind'), binding.device, `unbind ${binding.driver} from`);
      return binding;
    },
    async unbindAgain(binding: DriverBinding): Promise<void> {
      write(driverFile(roots, binding.driver, 'unbind'), binding.device, `unbind ${binding.driver} from`);
    },
    async bind(binding: DriverBinding): Promise<void> {
      write(driverFile(roots, binding.driver, 'bind'), binding.device, `bind ${binding.driver} to`);
    },
  };
}
