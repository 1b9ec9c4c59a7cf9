// Which device a udev event is about. Pure: the event's subsystem, action and kernel name decide;
// nothing is read. The controller hands block routes to the scheduler at once and looks namespace
// routes up in sysfs first (a namespace's key is its block device, when it has one).

import type { DeviceEvent } from './ports.js';

export type Route =
  /** A pmem disk to decide again; `removal` when the event said it went away. */
  | { kind: 'device'; key: string; removal: boolean }
  /** An nd namespace event: which device it is needs sysfs; `gone` for remove and unbind. */
  | { kind: 'namespace'; sysname: string; syspath: string; gone: boolean };

const PMEM_DISK = /^pmem\d+(\.\d+)?$/;
const PMEM_PARTITION = /^(pmem\d+(?:\.\d+)?)p\d+$/;
const ND_NAMESPACE = /^namespace\d+\.\d+$/;

/** `pmem0`, `pmem1.2`: a device key that is a block device's name (the others are namespace names). */
export function isDiskName(name: string): boolean {
  return PMEM_DISK.test(name);
}

/** The route of one event, or null for an event no pmem device needs (another subsystem, a region). */
export function routeEvent(event: DeviceEvent): Route | null {
  if (event.subsystem === 'block') {
    const partition = PMEM_PARTITION.exec(event.sysname);
    // A partition changing can cut into the reserved area: judge its disk again.
    if (partition) return { kind: 'device', key: partition[1]!, removal: false };
    if (PMEM_DISK.test(event.sysname)) return { kind: 'device', key: event.sysname, removal: event.action === 'remove' };
    return null;
  }
  if (event.subsystem === 'nd' && ND_NAMESPACE.test(event.sysname)) {
    // Namespaces without a block device (devdax, disabled) are known only by their nd events.
    return { kind: 'namespace', sysname: event.sysname, syspath: event.syspath, gone: event.action === 'remove' || event.action === 'unbind' };
  }
  return null;
}
