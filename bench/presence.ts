// Hot-unplug and replug as the daemon's lookups by name see them: a block device vanishes from
// /sys/class/block, or comes back. Synchronous, so the replaying event source (replay-daemon.ts)
// can change the tree between two events exactly as the kernel would before sending them.

import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';

export function setPresentIn(sysRoot: string, device: string, present: boolean): void {
  const visible = join(sysRoot, 'class', 'block', device);
  const hidden = join(sysRoot, 'class', 'block', `.unplugged-${device}`);
  renameSync(present ? hidden : visible, present ? visible : hidden);
}

/** Plugs every device back in that a replay left unplugged. */
export function replugAll(sysRoot: string, devices: readonly string[]): void {
  for (const device of devices) {
    if (existsSync(join(sysRoot, 'class', 'block', `.unplugged-${device}`))) setPresentIn(sysRoot, device, true);
  }
}
