// What the daemon says about each device, and where: the device's record (what `xen-pmem
// status` shows), one journal line when its state or reason changes, systemd's STATUS= line, and
// state.json. It is the one writer of state.json: writes are coalesced (calls that arrive while a
// write is queued share it) and spaced SAVE_SPACING_MS apart, so a coldplug of a thousand devices
// costs a handful of writes; flush() writes at once. Exactly-once does not depend on this file:
// the ledger journal is written by the reporter on its own.

import { messageOf } from '../core/errno.js';
import { STATE_VERSION, type DaemonState, type DeviceRecord, type DeviceState, type LedgerEntry } from '../format/records.js';
import { layoutToFields } from '../format/serializers.js';
import type { PmemNamespaceModel } from '../sysfs/types.js';
import type { Capability } from '../xen/interface.js';
import { messageIdOf } from './catalog.js';
import type { Outcome } from './decide.js';
import type { Component } from './lifecycle.js';
import { MESSAGE_ID_FIELD, type DaemonLogger, type LogFields } from './log.js';
import type { Notifier } from './notify.js';

export interface PublisherPorts {
  /** state.json: what `xen-pmem status` reads. */
  saveState(state: DaemonState): Promise<void>;
  log: DaemonLogger;
  notifier: Notifier;
  now(): Date;
}

/** What the publisher shows beside the device records, owned elsewhere (the reporter). */
export interface PublishedViews {
  ledger(): readonly LedgerEntry[];
  capability(): Capability | null;
}

/** state.json is for people; one write per this interval is fresh enough for `xen-pmem status`. */
const SAVE_SPACING_MS = 100;
/**
 * STATUS= is one line for `systemctl status`: a burst of decisions sends the last of them, this
 * long after the first. Each send is a datagram to the service manager (a socket opened, sent and
 * closed by sd_notify); one per decision made a fifth of a 1024-device coldplug.
 */
export const STATUS_SPACING_MS = 100;

/**
 * pmem2 before pmem10. One collator for every snapshot: localeCompare with options builds a new
 * one per comparison, which made each state write cost milliseconds on a host with 1024 devices.
 */
const DEVICE_ORDER = new Intl.Collator('en', { numeric: true });

export class StatusPublisher implements Component {
  readonly name = 'status';
  private readonly records = new Map<string, DeviceRecord>();
  private readonly recordedThisRun = new Set<string>();
  private readonly startedAt: string;
  private ready = false;
  private queuedSave: Promise<void> | null = null;
  private lastSave: Promise<void> = Promise.resolve();
  private lastSaveEnd = 0;
  /** The next write may not wait for its spacing: coldplug is done, or the daemon stops. */
  private saveNow = false;
  private wakeSave: (() => void) | null = null;
  private lastDecision: Date | null = null;
  private readonly listeners: (() => void)[] = [];
  private statusDue: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly ports: PublisherPorts, private readonly views: PublishedViews, previous: DaemonState | null) {
    this.startedAt = ports.now().toISOString();
    // Keep what status showed before the restart; coldplug refreshes every device still present.
    for (const record of previous?.devices ?? []) this.records.set(record.device, record);
  }

  async start(): Promise<void> {}

  /** The last write, with everything known at the moment it starts. */
  async stop(): Promise<void> {
    this.cancelStatus();
    await this.flush();
  }

  /** The record of a device, if any: what the decision of its removal needs to know. */
  record(key: string): DeviceRecord | undefined {
    return this.records.get(key);
  }

  keys(): string[] {
    return [...this.records.keys()];
  }

  /** Coldplug is done: READY=1 follows, and state.json says so at once. */
  markReady(): Promise<void> {
    this.ready = true;
    // READY=1 carries the summary (src/daemon/lifecycle.ts): a STATUS= of its own would repeat it.
    this.cancelStatus();
    this.changed();
    return this.flush();
  }

  /** When a pass last ended with a decision, changed or not; null before the first. */
  lastDecisionAt(): Date | null {
    return this.lastDecision;
  }

  /** Calls `listener` after every decision and at the end of coldplug: what the metrics writer follows. */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  /**
   * A pass over `key` ended with `found`: updates its record, tells the journal when the state or
   * the reason changed (a debug line otherwise), updates STATUS= and schedules a write.
   */
  publish(key: string, found: Outcome & { model?: PmemNamespaceModel }, nextAttempt: Date | null): void {
    const previous = this.records.get(key);
    // Within one run, a reported device stays as it was reported: a rescan that finds it in the
    // ledger says nothing new, and status keeps the sentence of the moment Xen took it. After a
    // restart, reported-earlier is news and is recorded.
    const outcome = previous?.state === 'reported' && found.reason === 'reported-earlier' && this.recordedThisRun.has(key)
      ? { ...found, reason: previous.reason, message: previous.message }
      : found;
    this.recordedThisRun.add(key);
    const changed = !previous || previous.state !== outcome.state || previous.reason !== outcome.reason;
    const model = outcome.model;
    const now = this.ports.now();
    const record: DeviceRecord = {
      device: key,
      devPath: model?.block?.devPath ?? previous?.devPath ?? null,
      namespace: model?.namespace ?? previous?.namespace ?? null,
      mode: model?.mode ?? previous?.mode ?? null,
      region: model?.region.name ?? previous?.region ?? null,
      state: outcome.state,
      reason: outcome.reason,
      message: outcome.message,
      since: changed ? now.toISOString() : previous!.since,
    };
    // A device that went away keeps the layout (and interface) Xen may still hold.
    const kept = outcome.state === 'removed' ? previous : undefined;
    const layout = outcome.layout ?? kept?.layout;
    if (layout) record.layout = layout;
    const via = outcome.interface ?? kept?.interface;
    if (via) record.interface = via;
    if (outcome.notes) record.notes = outcome.notes;
    if (outcome.unbound) record.unbound = outcome.unbound;
    if (nextAttempt) record.nextAttempt = nextAttempt.toISOString();
    this.records.set(key, record);

    const fields: LogFields = {
      device: key, state: outcome.state, reason: outcome.reason,
      ...(outcome.layout ? layoutToFields(outcome.layout) : {}),
      ...(outcome.interface ? { interface: outcome.interface } : {}),
    };
    if (changed) {
      // A damaged copy does not stop the device, but it is the operator's to repair (setup again
      // when the device is free): a warning of its own, before the outcome it led to.
      for (const note of outcome.notes ?? []) {
        this.ports.log.warn({ device: key, reason: 'superblock-copy-damaged', [MESSAGE_ID_FIELD]: messageIdOf('superblock-copy-damaged') }, `${key}: ${note}`);
      }
      // Only the line of a change carries its catalog id: `journalctl MESSAGE_ID=` then finds each
      // outcome once, not the debug lines of passes that changed nothing.
      this.ports.log[outcome.severity]({ ...fields, [MESSAGE_ID_FIELD]: messageIdOf(outcome.catalog) }, outcome.message);
    } else {
      this.ports.log.debug(fields, outcome.message);
    }
    if (changed) {
      this.scheduleStatus();
      // Not awaited: the next decision must not wait for a file that only people read. The write
      // logs its own failures.
      void this.save(false);
    }
    this.lastDecision = now;
    this.changed();
  }

  snapshot(): DaemonState {
    return {
      version: STATE_VERSION,
      pid: process.pid,
      startedAt: this.startedAt,
      updatedAt: this.ports.now().toISOString(),
      ready: this.ready,
      capability: this.views.capability(),
      devices: [...this.records.values()].sort((a, b) => DEVICE_ORDER.compare(a.device, b.device)),
      ledger: [...this.views.ledger()].sort((a, b) => DEVICE_ORDER.compare(a.device, b.device)),
    };
  }

  /**
   * Sends STATUS= within STATUS_SPACING_MS, with the summary of that moment. During coldplug
   * nothing is sent: READY=1 follows with the summary, and systemd shows "activating" until then.
   */
  private scheduleStatus(): void {
    if (!this.ready || this.statusDue !== null) return;
    this.statusDue = setTimeout(() => {
      this.statusDue = null;
      this.ports.notifier.status(this.summary());
    }, STATUS_SPACING_MS);
    // A pending status line must not keep a stopping process alive.
    this.statusDue.unref();
  }

  private cancelStatus(): void {
    if (this.statusDue !== null) clearTimeout(this.statusDue);
    this.statusDue = null;
  }

  /** The STATUS= line: `pmem devices: 1 absent, 2 reported`. */
  summary(): string {
    const counts = new Map<DeviceState, number>();
    for (const record of this.records.values()) counts.set(record.state, (counts.get(record.state) ?? 0) + 1);
    const parts = [...counts.entries()].sort().map(([state, count]) => `${count} ${state}`);
    return parts.length === 0 ? 'no pmem devices' : `pmem devices: ${parts.join(', ')}`;
  }

  /** Writes state.json now, without waiting for the spacing; resolves once it is written (or failed, logged). */
  flush(): Promise<void> {
    return this.save(true);
  }

  /** Saves state.json as it is when the write starts, sharing a write already queued. */
  private save(immediately: boolean): Promise<void> {
    if (immediately) {
      this.saveNow = true;
      this.wakeSave?.();
    }
    if (!this.queuedSave) {
      const queued: Promise<void> = this.lastSave.then(async () => {
        const wait = this.lastSaveEnd + SAVE_SPACING_MS - Date.now();
        if (wait > 0 && !this.saveNow) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, wait);
            this.wakeSave = () => { clearTimeout(timer); resolve(); };
          });
          this.wakeSave = null;
        }
        this.saveNow = false;
        if (this.queuedSave === queued) this.queuedSave = null;
        try {
          await this.ports.saveState(this.snapshot());
        } finally {
          this.lastSaveEnd = Date.now();
        }
      });
      this.queuedSave = queued;
      this.lastSave = queued.catch(() => undefined);
    }
    return this.queuedSave.catch((error) => {
      this.ports.log.error({ reason: 'state-unwritable' }, `cannot write the daemon state: ${messageOf(error)}`);
    });
  }
}
