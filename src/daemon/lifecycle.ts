// The daemon's lifecycle (zigbee2mqtt's controller is the model): a list of components, each with
// an async start() and stop() and a constructor that does nothing. They start in order and stop in
// reverse; a component that fails to start or stop is logged on its own and the others go on.
// systemd hears READY=1 once every component has started (coldplug is the controller's start),
// STOPPING=1 before the first one stops, and the watchdog ends after the last. The watchdog's
// keep-alive runs from the beginning, so a coldplug that waits on a slow hypervisor is not taken
// for a hung daemon; and a stop asked for during the start stops the component still starting.
//
// A new long-running part of the daemon is one more Component, built in src/daemon/xen-pmemd.ts
// and put in the list, as the metrics writer (metrics.ts) is: see docs/architecture.md.

import { messageOf } from '../core/errno.js';
import type { DaemonLogger } from './log.js';
import type { Notifier } from './notify.js';

export interface Component {
  /** Names the component in the journal line of a failure. */
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export class Lifecycle {
  private started: Component[] = [];
  /** The component whose start() is under way. */
  private starting: Component | null = null;
  private stopped = false;

  constructor(
    private readonly components: readonly Component[],
    private readonly log: DaemonLogger,
    private readonly notifier: Notifier,
    /** The STATUS= line that goes with READY=1. */
    private readonly summary: () => string,
  ) {}

  /** Starts every component in order, then tells systemd the daemon is ready. */
  async start(): Promise<void> {
    this.notifier.startWatchdog();
    for (const component of this.components) {
      if (this.stopped) return;
      this.starting = component;
      try {
        await component.start();
        if (!this.stopped) this.started.push(component);
      } catch (error) {
        this.log.error({ reason: 'component-failed', component: component.name }, `${component.name} did not start: ${messageOf(error)}`);
      } finally {
        this.starting = null;
      }
    }
    if (!this.stopped) this.notifier.ready(this.summary());
  }

  /** Stops the started components in reverse order. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.notifier.stopping();
    const running = this.starting ? [this.starting, ...this.started.reverse()] : this.started.reverse();
    for (const component of running) {
      try {
        await component.stop();
      } catch (error) {
        this.log.error({ reason: 'component-failed', component: component.name }, `${component.name} did not stop cleanly: ${messageOf(error)}`);
      }
    }
    this.started = [];
    this.notifier.stop();
  }
}
