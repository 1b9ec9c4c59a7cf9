// The daemon's controller: which device each udev event concerns, one worker per device, and the
// pass that decides a device, top to bottom in `pass()`:
//
//   1. facts     the device model from sysfs (gone: a removal)
//   2. verdict   admitted by the model and the config, then the scan of the disk
//   3. report    judged against what Xen holds and Xen's rules, and reported (reporter.ts:
//                the exactly-once ledger, the unbind, the hypercall off the event loop)
//   4. record    retried later with backoff, or settled
//   5. publish   the record, its journal line, STATUS= and state.json (status-publisher.ts)
//
// Work for one device never runs twice at once: events that arrive while a device is decided
// mark it dirty, and it is decided once more afterwards, so a burst costs at most two passes. As a
// component of the daemon's lifecycle, its start asks the hypervisor and decides every device
// present (coldplug); its stop waits for the passes under way and writes the state a last time.

import { messageOf } from '../core/errno.js';
import type { DaemonState } from '../format/records.js';
import type { DeviceReader } from '../io/ports.js';
import { DeviceLockedError } from '../io/lock.js';
import { scanDevice } from '../io/scan.js';
import { deviceKey, isSupportedPmem, type PmemNamespaceModel } from '../sysfs/types.js';
import type { Config } from './config.js';
import { admit, removalOutcome, type Outcome } from './decide.js';
import type { LedgerStep } from './ledger.js';
import type { Component } from './lifecycle.js';
import type { DaemonLogger } from './log.js';
import type { Notifier } from './notify.js';
import type { DeviceEvent, DriverPort } from './ports.js';
import { ExactlyOnceReporter, type HypervisorPort } from './reporter.js';
import { StatusPublisher } from './status-publisher.js';

/** A port may answer at once (sysfs is read synchronously) or after a wait (a test's stand-in). */
type Awaitable<T> = T | Promise<T>;

/** Everything the controller needs of the world; run-daemon.ts wires the real ones. */
export interface DaemonPorts {
  listNamespaces(): Awaitable<PmemNamespaceModel[]>;
  readByBlockName(name: string): Awaitable<PmemNamespaceModel | null>;
  readBySyspath(syspath: string): Awaitable<PmemNamespaceModel | null>;
  openReader(devPath: string): Promise<DeviceReader>;
  bridge: HypervisorPort;
  /** The nd drivers' bind and unbind: a device's parent is unbound before its add. */
  drivers: DriverPort;
  /** What kind of Xen guest this Dom0 is (`PV`, `PVH`), read once at start; null when unknown. */
  xenGuestType: string | null;
  /** state.json: what `xen-pmem status` reads. */
  saveState(state: DaemonState): Promise<void>;
  /** The exactly-once journal: every line of the group on disk (one sync) when it resolves. */
  recordLedger(steps: readonly LedgerStep[]): Promise<void>;
  log: DaemonLogger;
  notifier: Notifier;
  now(): Date;
}

/** Which device an event is about: a pmem disk, or an nd device that sysfs must resolve. */
export type Route =
  /** A pmem disk to decide again; `removal` when the event said it went away. */
  | { kind: 'device'; key: string; removal: boolean }
  /** An nd namespace event: which device it is needs sysfs; `gone` for remove and unbind. */
  | { kind: 'namespace'; sysname: string; syspath: string; gone: boolean };

const PMEM_DISK = /^pmem\d+(\.\d+)?$/;
const PMEM_PARTITION = /^(pmem\d+(?:\.\d+)?)p\d+$/;
const ND_NAMESPACE = /^namespace\d+\.\d+$/;

/** The route of one event (pure), or null for an event no pmem device needs (another subsystem, a region). */
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

interface Worker {
  /** The passes under way, while there are. */
  running: Promise<void> | null;
  dirty: boolean;
  /** The last event said the device went away: confirm against sysfs before scanning. */
  removalHint: boolean;
  /** A model read moments ago by the coldplug listing; used once instead of reading sysfs again. */
  listed: PmemNamespaceModel | null;
  retryTimer: NodeJS.Timeout | null;
  attempts: number;
}

export class Controller implements Component {
  readonly name = 'controller';
  /** The device records and their journal lines, STATUS= and state.json; other components read it. */
  readonly status: StatusPublisher;
  private readonly reporter: ExactlyOnceReporter;
  private readonly workers = new Map<string, Worker>();
  /** Namespace events being looked up in sysfs, and unbinds under way: what stop() waits for besides the passes. */
  private readonly tracked = new Set<Promise<void>>();
  private stopped = false;

  /**
   * `previous`: what the last run left (state.json's records and the ledger's journal).
   * `ledgerKnown`: the journal was there and read whole; otherwise Xen is asked what it holds.
   */
  constructor(private readonly config: Config, private readonly ports: DaemonPorts, previous: DaemonState | null, ledgerKnown = false) {
    this.reporter = new ExactlyOnceReporter(ports, config.dryRun, previous?.ledger ?? [], ledgerKnown);
    const reporter = this.reporter;
    this.status = new StatusPublisher(ports, { ledger: () => reporter.entries(), capability: () => reporter.capability() }, previous);
  }

  /** Asks the hypervisor what it implements, then decides every device present (coldplug). */
  async start(): Promise<void> {
    await this.reporter.probe();
    let namespaces: PmemNamespaceModel[] = [];
    try {
      namespaces = await this.ports.listNamespaces();
    } catch (error) {
      this.ports.log.error({ reason: 'sysfs-unreadable' }, `cannot list pmem namespaces in sysfs: ${messageOf(error)}`);
    }
    const present = new Set<string>();
    const passes: Promise<void>[] = [];
    for (const model of namespaces) {
      // A namespace whose driver this daemon unbound for Xen is the reported device it was.
      const heldBy = model.block ? undefined : this.heldRecordOf(model.namespace, model.namespace);
      const key = heldBy?.device ?? deviceKey(model);
      present.add(key);
      passes.push(this.schedule(key, false, heldBy ? null : model));
    }
    // Devices the previous run knew that are gone now.
    for (const key of this.status.keys()) {
      if (!present.has(key) && this.status.record(key)!.state !== 'removed') passes.push(this.schedule(key, true));
    }
    await Promise.all(passes);
    await this.status.markReady();
  }

  /**
   * No new pass starts and no new hypercall; the passes under way finish (a report Xen is working
   * on is answered and recorded first); state.json is written at once.
   */
  async stop(): Promise<void> {
    this.reporter.stop();
    this.stopped = true;
    for (const worker of this.workers.values()) {
      if (worker.retryTimer) clearTimeout(worker.retryTimer);
      worker.retryTimer = null;
      worker.dirty = false;
    }
    for (;;) {
      const busy = [...this.workers.values()].flatMap((worker) => (worker.running ? [worker.running] : [])).concat([...this.tracked]);
      if (busy.length === 0) break;
      await Promise.all(busy);
    }
    await this.status.stop();
  }

  /**
   * One udev event. Resolves once the work it asked for is done: the pass over its device (or the
   * one it collapsed into), or the look-up of a namespace event and the pass it led to.
   */
  handleEvent(event: DeviceEvent): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const work: Promise<void>[] = [];
    if (event.subsystem === 'nd' && event.action === 'bind') work.push(this.keepUnbound(event.sysname));
    const route = routeEvent(event);
    if (route?.kind === 'device') work.push(this.schedule(route.key, route.removal));
    else if (route?.kind === 'namespace') work.push(this.track(this.resolveNamespaceEvent(route.sysname, route.syspath, route.gone)));
    return Promise.all(work).then(() => undefined);
  }

  summary(): string {
    return this.status.summary();
  }

  /** The pass over one device, top to bottom; whatever goes wrong becomes an outcome, never a throw. */
  private async pass(key: string, removalHint: boolean, listed: PmemNamespaceModel | null): Promise<void> {
    let outcome: Outcome & { model?: PmemNamespaceModel };
    try {
      outcome = await this.decide(key, removalHint, listed);
    } catch (error) {
      outcome = { state: 'failed', reason: 'internal-error', catalog: 'failed', severity: 'error', message: `${key}: unexpected error while deciding: ${messageOf(error)}` };
    }
    // 4. Record: a retrying device is decided again after the backoff.
    const nextAttempt = outcome.state === 'retrying' ? this.retryLater(key) : this.settled(key);
    // 5. Publish.
    this.status.publish(key, outcome, nextAttempt);
  }

  private async decide(key: string, removalHint: boolean, listed: PmemNamespaceModel | null): Promise<Outcome & { model?: PmemNamespaceModel }> {
    // 1. Facts.
    const model = listed ?? await this.readModel(key);
    if (!model) return this.removal(key);

    // 2. Verdict: the model and the config before any I/O, then the scan.
    const admission = admit(model, this.config, this.ports.xenGuestType);
    if (admission) return { ...admission, model };
    if (!isSupportedPmem(model)) {
      return { state: 'rejected', reason: 'not-mappable', catalog: 'rejected-device', severity: 'warn', model, message: `${key}: cannot be mapped to physical addresses` };
    }
    let verdict;
    try {
      const reader = await this.ports.openReader(model.block.devPath);
      try {
        verdict = await scanDevice(reader, { namespaceUuid: model.namespaceUuid });
      } finally {
        await reader.close().catch(() => undefined);
      }
    } catch (error) {
      // A device removed during its scan ends as removed, not as an I/O failure.
      if (removalHint || !(await this.readModel(key))) return this.removal(key);
      // Another program kept the disk locked past the reader's patience (it is writing a layout):
      // decided again after the backoff, and at the event its unlock brings.
      const reason = error instanceof DeviceLockedError ? 'device-locked' : 'io-error';
      return { state: 'retrying', reason, catalog: 'retrying', severity: 'warn', model, message: `${key}: cannot read ${model.block.devPath}: ${messageOf(error)}` };
    }

    // 3. Report (or the judgement that needs none).
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
    if (PMEM_DISK.test(key)) return this.ports.readByBlockName(key);
    const namespaces = await this.ports.listNamespaces();
    return namespaces.find((model) => deviceKey(model) === key) ?? null;
  }

  /** Asks for a pass over `key`; collapses into the one running, if any. Resolves when the device's passes are done. */
  private schedule(key: string, removalHint: boolean, listed: PmemNamespaceModel | null = null): Promise<void> {
    if (this.stopped) return Promise.resolve();
    let worker = this.workers.get(key);
    if (!worker) {
      worker = { running: null, dirty: false, removalHint: false, listed: null, retryTimer: null, attempts: 0 };
      this.workers.set(key, worker);
    }
    worker.dirty = true;
    worker.removalHint = removalHint;
    // An event after the listing may mean the device changed since: read it afresh then.
    worker.listed = worker.running ? null : listed;
    if (worker.retryTimer) {
      clearTimeout(worker.retryTimer);
      worker.retryTimer = null;
    }
    worker.running ??= this.drain(key, worker);
    return worker.running;
  }

  private async drain(key: string, worker: Worker): Promise<void> {
    // Let the rest of a burst (udev delivers several events per read) land first.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (worker.dirty && !this.stopped) {
      worker.dirty = false;
      const { removalHint, listed } = worker;
      worker.removalHint = false;
      worker.listed = null;
      await this.pass(key, removalHint, listed);
    }
    worker.running = null;
  }

  /**
   * The pass over `key` ended retrying: the next one after a delay that doubles from `initialMs`
   * to `maxMs`; says when it is due. After stop() nothing is scheduled and null comes back.
   */
  private retryLater(key: string): Date | null {
    const worker = this.workers.get(key);
    if (!worker || this.stopped) {
      if (worker) worker.attempts = 0;
      return null;
    }
    const delay = Math.min(this.config.retry.initialMs * 2 ** worker.attempts, this.config.retry.maxMs);
    worker.attempts++;
    // A burst can end several passes in retrying: only the last one's retry stays due.
    if (worker.retryTimer) clearTimeout(worker.retryTimer);
    worker.retryTimer = setTimeout(() => {
      worker.retryTimer = null;
      void this.schedule(key, false);
    }, delay);
    worker.retryTimer.unref();
    return new Date(this.ports.now().getTime() + delay);
  }

  /** The pass ended in anything but retrying: the next retry starts from the first delay. */
  private settled(key: string): null {
    const worker = this.workers.get(key);
    if (worker) worker.attempts = 0;
    return null;
  }

  /** Work stop() waits for besides the passes (it removes itself when done). */
  private track(work: Promise<void>): Promise<void> {
    const tracked = work.finally(() => this.tracked.delete(tracked));
    this.tracked.add(tracked);
    return tracked;
  }

  private async resolveNamespaceEvent(sysname: string, syspath: string, gone: boolean): Promise<void> {
    try {
      const model = gone ? null : await this.ports.readBySyspath(syspath);
      if (model) {
        const key = deviceKey(model);
        // The seed namespace a region keeps for ndctl (size 0) sends nd events too, but it is no
        // device: coldplug and decide() both go by listNamespaces, which leaves seeds out, so a
        // record made for one could only ever read "removed".
        if (!model.block && !this.status.record(key) && !(await this.ports.listNamespaces()).some((listed) => deviceKey(listed) === key)) return;
        await this.schedule(key, false);
      } else if (this.status.record(sysname)) {
        await this.schedule(sysname, true);
      }
    } catch (error) {
      this.ports.log.error({ device: sysname, reason: 'internal-error' }, `${sysname}: cannot resolve the namespace event: ${messageOf(error)}`);
    }
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
  private keepUnbound(sysname: string): Promise<void> {
    const record = this.heldRecordOf(sysname);
    if (!record?.unbound) return Promise.resolve();
    const unbound = record.unbound;
    return this.track(this.ports.drivers.unbindAgain(unbound).then(
      () => this.ports.log.error({ device: record.device, reason: 'bound-while-held' },
        `${record.device}: ${unbound.device} was bound to ${unbound.driver} again, but Xen holds its region and refuses the Dom0 every frame of it, so the driver's mappings would fail: unbound it again (the region stays Xen's until reboot)`),
      (error: unknown) => this.ports.log.error({ device: record.device, reason: 'bound-while-held' },
        `${record.device}: ${unbound.device} was bound to ${unbound.driver} again although Xen holds its region, and unbinding it again failed: ${messageOf(error)}; do not use the device before the host reboots`),
    ));
  }
}
