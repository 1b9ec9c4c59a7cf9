// The only file that touches node-udev (libudev). It implements the daemon's event source
// (src/daemon/ports.ts): udev's processed events (the "udev" netlink group: after udevd ran its
// rules, so /dev nodes exist) become the daemon's DeviceEvent.

import { createRequire } from 'node:module';
import { basename } from 'node:path';
import type { DeviceEvent, EventSource } from '../daemon/ports.js';

interface UdevRecord {
  syspath: string;
  [property: string]: string | null;
}

interface UdevMonitor {
  on(action: string, listener: (record: UdevRecord) => void): void;
}

interface UdevModule {
  monitor(subsystem?: string): UdevMonitor;
}

const ACTIONS = ['add', 'change', 'remove', 'bind', 'unbind', 'move', 'online', 'offline'] as const;

/** Monitors the `nd` and `block` subsystems; the native module loads only when called. */
export function udevEventSource(subsystems: readonly string[] = ['nd', 'block']): EventSource {
  const require = createRequire(import.meta.url);
  const udev = require('udev') as UdevModule;
  const monitors: UdevMonitor[] = [];
  let stopped = false;
  return {
    start(onEvent) {
      for (const subsystem of subsystems) {
        const monitor = udev.monitor(subsystem);
        for (const action of ACTIONS) {
          monitor.on(action, (record) => {
            if (!stopped) onEvent(toEvent(action, subsystem, record));
          });
        }
        monitors.push(monitor);
      }
    },
    // node-udev 1.0.1's close() frees the monitor's poll handle and its finalizer frees it again
    // (a SIGSEGV at the next garbage collection), so stopping only stops delivering events; the
    // sockets close when the process exits.
    stop() {
      stopped = true;
    },
  };
}

function toEvent(action: string, subsystem: string, record: UdevRecord): DeviceEvent {
  const event: DeviceEvent = {
    action,
    subsystem: record.SUBSYSTEM ?? subsystem,
    sysname: basename(record.DEVPATH ?? record.syspath),
    syspath: record.syspath,
  };
  if (record.DEVTYPE) event.devtype = record.DEVTYPE;
  return event;
}
