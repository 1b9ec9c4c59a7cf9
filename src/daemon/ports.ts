// The daemon's ports to the outside world that native code implements. Types only: the udev
// event source (src/native/udev.ts, over node-udev) and the two calls of libsystemd the daemon
// uses (src/native/libsystemd.ts), and the nd drivers' bind and unbind in sysfs
// (src/sysfs/driver.ts). Tests and benchmarks plug in their own through these types.

import type { UnboundDriver } from '../format/records.js';

/** One processed udev event, as the daemon reads it. */
export interface DeviceEvent {
  action: string;
  subsystem: string;
  /** Kernel name: `pmem0`, `pmem0p1`, `namespace0.0`, `region0`. */
  sysname: string;
  syspath: string;
  devtype?: string;
}

/** Where udev events come from. Listening starts at `start` and ends at `stop`. */
export interface EventSource {
  start(onEvent: (event: DeviceEvent) => void): void;
  stop(): void;
}

/** Where structured journal entries go (libsystemd's sd_journal_sendv). */
export interface JournalSender {
  /**
   * One journal entry from `FIELD=value` items. Each item travels as its own iovec, so values may
   * hold any byte, newlines included. Returns 0 or a negative errno.
   */
  journalSend(fields: readonly string[]): number;
}

/** Where notifications for a Type=notify unit go (libsystemd's sd_notify). */
export interface NotifySender {
  /**
   * Sends `state` to $NOTIFY_SOCKET of this process's environment. Returns > 0 when sent, 0 when
   * no socket is configured, a negative errno on failure.
   */
  notify(state: string): number;
}


/**
 * The nd bus's drivers in sysfs (src/sysfs/driver.ts): Xen refuses a region any domain still
 * maps, and the pmem driver maps the whole namespace while it is bound.
 */
export interface DriverPort {
  /**
   * Unbinds the driver of the block device's parent (what /sys/block/<name>/device links to; the
   * block device's `syspath` is its real sysfs directory): writes the parent's name to its
   * driver's `unbind`. The block device goes away. Rejects with a sentence when it cannot.
   */
  unbind(block: { name: string; syspath: string }): Promise<UnboundDriver>;
  /** Writes the device's name to the driver's `unbind` (a device Xen holds, bound again). */
  unbindAgain(unbound: UnboundDriver): Promise<void>;
  /** Gives the device back to its driver (`bind`), after Xen refused the region. */
  bind(unbound: UnboundDriver): Promise<void>;
}
