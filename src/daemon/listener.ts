// The udev listener as a component of the daemon: it starts listening before the controller's
// coldplug enumerates the devices, so a device that appears in between is not missed.

import type { Component } from './lifecycle.js';
import type { DaemonLogger } from './log.js';
import type { DeviceEvent, EventSource } from './ports.js';

export class UdevListener implements Component {
  readonly name = 'udev';

  constructor(
    private readonly events: EventSource,
    private readonly onEvent: (event: DeviceEvent) => void,
    private readonly log: DaemonLogger,
  ) {}

  /** Without udev the daemon still decides what coldplug finds; it says so and goes on. */
  async start(): Promise<void> {
    try {
      this.events.start(this.onEvent);
    } catch (error) {
      this.log.error({ reason: 'udev-unavailable' }, `cannot listen for udev events (${(error as Error).message}); hotplugged pmem will not be seen until restart`);
    }
  }

  /** Stops delivering events (the event source keeps its sockets until the process ends). */
  async stop(): Promise<void> {
    this.events.stop();
  }
}
