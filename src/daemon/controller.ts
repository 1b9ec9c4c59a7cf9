// The daemon's controller: routes each udev event to the device it concerns, and decides each
// device in a pass (admit → scan → judge → report). It is built of parts that each do one job:
//
//   router.ts            which device an event is about (pure)
//   scheduler.ts         one worker per device, dirty marks, retries with backoff
//   reporter.ts          the exactly-once step: ledger → hypercall → ledger, in batches (group commit)
//   status-publisher.ts  records, the journal line of each outcome, STATUS=, state.json
//
// As a component of the daemon's lifecycle, its start is coldplug and its stop waits for the
// passes under way and writes the state a last time.

import { messageOf } from '../core/errno.js';
import type { Verdict } from '../core/validate.js';
import type { DaemonState } from '../format/records.js';
import type { DeviceReader } from '../io/ports.js';
import { DeviceLockedError } from '../io/lock.js';
import { scanDevice } from '../io/scan.js';
import { deviceKey, isSupportedPmem, type PmemNamespaceModel } from '../sysfs/types.js';
import type { Capability } from '../xen/interface.js';
import type { Config } from './config.js';
import { admit, removalOutcome, type Outcome } from './decide.js';
import type { LedgerStep } from './ledger.js';
import type { Component } from './lifecycle.js';
import type { DaemonLogger } from './log.js';
import type { Notifier } from './notify.js';
import type { DeviceEvent, DriverPort } from './ports.js';
import { ExactlyOnceReporter, type HypervisorPort } from './reporter.js';
import { isDiskName, routeEvent } from './router.js';
import { DeviceScheduler, type Pass } from './scheduler.js';
import { StatusPublisher } from './status-publisher.js';

/** A port may answer at once (sysfs is read synchronously) or after a wait (a test's stand-in). */
type Awaitable<T> = T | Promise<T>;

/** Everything the controller needs of the world; xen-pmemd wires the real ones. */
export interface DaemonPorts {
  listNamespaces(): Awaitable<PmemNamespaceModel[]>;
  readByBlockName(name: string): Awaitable<PmemNamespaceModel | null>;
  readBySyspath(syspath: string): Awaitable<PmemNamespaceModel | null>;
  openReader(devPath: string): Promise<DeviceReader>;
  bridge: HypervisorPort;
  /** The nd drivers' bind and unbind: a device's parent is unbound before its add. */
  drivers: DriverPort;
  /** state.json: what `xen-pmem status` reads. */
  saveState(state: DaemonState): Promise<void>;
  /** The exactly-once journal: every line of the group on disk (one sync) when it resolves. */
  recordLedger(steps: readonly LedgerStep[]): Promise<void>;
  log: DaemonLogger;
  notifier: Notifier;
  now(): Date;
}

export class Controller implements Component {
  readonly name = 'controller';
  /** The device records and their journal lines, STATUS= and state.json; other components read it. */
  readonly status: StatusPublisher;
  private readonly reporter: ExactlyOnceReporter;
  private readonly scheduler: DeviceScheduler;

  /**
   * `previous`: what the last run left (state.json's records and the ledger's journal).
   * `ledgerKnown`: the journal was there and read whole; otherwise Xen is asked what it holds.
   */
  constructor(private readonly config: Config, private readonly ports: DaemonPorts, previous: DaemonState | null, ledgerKnown = false) {
    this.reporter = new ExactlyOnceReporter(ports, config.dryRun, previous?.ledger ?? [], ledgerKnown);
    const reporter = this.reporter;
    this.status = new StatusPublisher(ports, { ledger: () => reporter.entries(), capability: () => reporter.capability() }, previous);
    this.scheduler = new DeviceScheduler((pass) => this.runPass(pass), config.retry);
  }

  /** Asks the hypervisor what it implements, then decides every device present. */
  async start(): Promise<void> {
    await this.probeHypervisor();
    await this.coldplug();
  }

  /**
   * No new pass starts and no new hypercall; the passes under way finish (a report Xen is working
   * on is answered and recorded first); state.json is written at once.
   */
  async stop(): Promise<void> {
    this.reporter.stop();
    await this.scheduler.stop();
    await this.status.stop();
  }

  /**
   * Asks the hypervisor once and says in plain words what that means for every device. A dry run
   * makes no hypercall, the probe included, so it learns nothing and returns null.
   */
  probeHypervisor(): Promise<Capability | null> {
    return this.reporter.probe();
  }

  /** Coldplug: every pmem namespace present now, decided before the caller sends READY=1. */
  async coldplug(): Promise<void> {
    let namespaces: PmemNamespaceModel[] = [];
    try {
      namespaces = await this.ports.listNamespaces();
    } catch (error) {
      this.ports.log.error({ reason: 'sysfs-unreadable' }, `cannot list pmem namespaces in sysfs: ${messageOf(error)}`);
    }
    const present = new Set<string>();
    for (const model of namespaces) {
      // A namespace whose driver this daemon unbound for Xen is the reported device it was.
      const heldBy = model.block ? undefined : this.heldRecordOf(model.namespace, model.namespace);
      const key = heldBy?.device ?? deviceKey(model);
      present.add(key);
      this.scheduler.schedule(key, false, heldBy ? null : model);
    }
    // Devices the previous run knew that are gone now.
    for (const key of this.status.keys()) {
      if (!present.has(key) && this.status.record(key)!.state !== 'removed') this.scheduler.schedule(key, true);
    }
    await this.scheduler.idle();
    await this.status.markReady();
  }

  handleEvent(event: DeviceEvent): void {
    if (this.scheduler.isStopped) return;
    if (event.subsystem === 'nd' && event.action === 'bind') this.keepUnbound(event.sysname);
    const route = routeEvent(event);
    if (route === null) return;
    if (route.kind === 'device') this.scheduler.schedule(route.key, route.removal);
    else this.scheduler.track(this.resolveNamespaceEvent(route.sysname, route.syspath, route.gone));
  }

  /** Resolves when no device has work queued or running, nor a namespace event being looked up (retry timers do not count). */
  idle(): Promise<void> {
    return this.scheduler.idle();
  }

  snapshot(): DaemonState {
    return this.status.snapshot();
  }

  summary(): string {
    return this.status.summary();
  }

  /** The reported device whose parent (namespace or pfn device) the daemon unbound for Xen. */
  private heldRecordOf(parent: string, namespace?: string) {
    for (const key of this.status.keys()) {
      const record = this.status.record(key)!;
      if (record.state === 'reported' && record.unbound && (record.unbound.device === parent || record.namespace === namespace)) return record;
    }
    return undefined;
  }

  /**
   * An operator bound a device Xen holds again: Xen refuses the Dom0 every frame of the region,
   * so the driver's mappings would fail. It is unbound again at once.
   */
  private keepUnbound(sysname: string): void {
    const record = this.heldRecordOf(sysname);
    if (!record?.unbound) return;
    const unbound = record.unbound;
    this.scheduler.track(this.ports.drivers.unbindAgain(unbound).then(
      () => this.ports.log.error({ device: record.device, reason: 'bound-while-held' },
        `${record.device}: ${unbound.device} was bound to ${unbound.driver} again, but Xen holds its region and refuses the Dom0 every frame of it, so the driver's mappings would fail: unbound it again (the region stays Xen's until reboot)`),
      (error: unknown) => this.ports.log.error({ device: record.device, reason: 'bound-while-held' },
        `${record.device}: ${unbound.device} was bound to ${unbound.driver} again although Xen holds its region, and unbinding it again failed: ${messageOf(error)}; do not use the device before the host reboots`),
    ));
  }

  private async resolveNamespaceEvent(sysname: string, syspath: string, gone: boolean): Promise<void> {
    try {
      const model = gone ? null : await this.ports.readBySyspath(syspath);
      if (model) {
        const key = deviceKey(model);
        // The seed namespace a region keeps for ndctl (size 0) sends nd events too, but it is no
        // device: coldplug and decideDevice both go by listNamespaces, which leaves seeds out, so
        // a record made for one could only ever read "removed".
        if (!model.block && !this.status.record(key) && !(await this.ports.listNamespaces()).some((listed) => deviceKey(listed) === key)) return;
        this.scheduler.schedule(key, false);
      } else if (this.status.record(sysname)) {
        this.scheduler.schedule(sysname, true);
      }
    } catch (error) {
      this.ports.log.error({ device: sysname, reason: 'internal-error' }, `${sysname}: cannot resolve the namespace event: ${messageOf(error)}`);
    }
  }

  /** One pass over one device; whatever goes wrong becomes an outcome, never a throw. */
  private async runPass({ key, removalHint, listed }: Pass): Promise<void> {
    let outcome: Outcome & { model?: PmemNamespaceModel };
    try {
      outcome = await this.decideDevice(key, removalHint, listed);
    } catch (error) {
      outcome = { state: 'failed', reason: 'internal-error', catalog: 'failed', severity: 'error', message: `${key}: unexpected error while deciding: ${messageOf(error)}` };
    }
    let nextAttempt: Date | null = null;
    if (outcome.state === 'retrying') nextAttempt = this.scheduler.retryLater(key, this.ports.now());
    else this.scheduler.settled(key);
    this.status.publish(key, outcome, nextAttempt);
  }

  private async decideDevice(key: string, removalHint: boolean, listed: PmemNamespaceModel | null): Promise<Outcome & { model?: PmemNamespaceModel }> {
    const model = listed ?? await this.readModel(key);
    if (!model) return this.removal(key);
    const admission = admit(model, this.config);
    if (admission) return { ...admission, model };
    if (!isSupportedPmem(model)) {
      return { state: 'rejected', reason: 'not-mappable', catalog: 'rejected-device', severity: 'warn', model, message: `${key}: cannot be mapped to physical addresses` };
    }
    let verdict: Verdict;
    try {
      verdict = await this.scan(model.block.devPath, model.namespaceUuid);
    } catch (error) {
      // A device removed during its scan ends as removed, not as an I/O failure.
      if (removalHint || !(await this.readModel(key))) return this.removal(key);
      // Another program kept the disk locked past the reader's patience (it is writing a layout):
      // decided again after the backoff, and at the event its unlock brings.
      const reason = error instanceof DeviceLockedError ? 'device-locked' : 'io-error';
      return { state: 'retrying', reason, catalog: 'retrying', severity: 'warn', model, message: `${key}: cannot read ${model.block.devPath}: ${messageOf(error)}` };
    }
    const outcome = await this.reporter.decide(key, model, verdict);
    const notes = verdict.status === 'valid' && verdict.notes.length > 0 ? verdict.notes : undefined;
    return notes ? { ...outcome, model, notes } : { ...outcome, model };
  }

  /** A device without its block device: gone, or unbound by this daemon for Xen (its namespace is still there). */
  private async removal(key: string): Promise<Outcome> {
    const record = this.status.record(key);
    const present = record?.unbound !== undefined && (await this.ports.listNamespaces()).some((model) => model.namespace === record.namespace);
    return removalOutcome(key, record, present);
  }

  private async readModel(key: string): Promise<PmemNamespaceModel | null> {
    if (isDiskName(key)) return this.ports.readByBlockName(key);
    const namespaces = await this.ports.listNamespaces();
    return namespaces.find((model) => deviceKey(model) === key) ?? null;
  }

  private async scan(devPath: string, namespaceUuid: string | null): Promise<Verdict> {
    const reader = await this.ports.openReader(devPath);
    try {
      return await scanDevice(reader, { namespaceUuid });
    } finally {
      await reader.close().catch(() => undefined);
    }
  }
}
