// The daemon's controller: turns udev events into per-device work, runs each device through
// admit → scan → judge → report, and keeps state, journal and systemd informed.
//
// Concurrency rules, which the exactly-once guarantee rests on:
// - one worker per device key; events that arrive while it runs mark it dirty, and it runs once
//   more afterwards, so a burst of events collapses into at most two scans;
// - the step from judging to recording the hypercall's answer runs under one global lock, so two
//   devices can never be judged against the same ledger and both be reported;
// - the ledger entry is on disk (pending, in the journal) before the hypercall is made.

import { messageOf } from '../core/errno.js';
import { layoutToFields } from '../format/serializers.js';
import type { Verdict } from '../core/validate.js';
import type { DeviceReader } from '../io/ports.js';
import { scanDevice } from '../io/scan.js';
import { deviceKey as keyOf, isSupportedPmem, type PmemNamespaceModel } from '../sysfs/types.js';
import type { BridgeAnswer, Capability, PfnRange, PmemReport } from '../xen/interface.js';
import { interfaceFor } from '../xen/interfaces/index.js';
import type { Config } from './config.js';
import {
  admit, interpretAnswer, judgeForXen, removalOutcome, sameRequest,
  type DeviceState, type LedgerEntry, type Outcome,
} from './decide.js';
import type { LedgerOp } from './ledger.js';
import type { DaemonLogger, LogFields } from './log.js';
import type { Notifier } from './notify.js';
import type { DeviceEvent } from './ports.js';
import type { DaemonState, DeviceRecord } from './state-store.js';

/** A port may answer at once (sysfs is read synchronously) or after a wait (a test's stand-in). */
type Awaitable<T> = T | Promise<T>;

export interface DaemonPorts {
  listNamespaces(): Awaitable<PmemNamespaceModel[]>;
  readByBlockName(name: string): Awaitable<PmemNamespaceModel | null>;
  readBySyspath(syspath: string): Awaitable<PmemNamespaceModel | null>;
  openReader(devPath: string): Promise<DeviceReader>;
  bridge: {
    capability(): Capability;
    report(request: PmemReport, alreadyReported: PfnRange[]): BridgeAnswer;
  };
  /** state.json: what `xen-pmem status` reads. */
  saveState(state: DaemonState): Promise<void>;
  /** The exactly-once journal: must be on disk when it resolves. */
  recordLedger(op: LedgerOp, entry: LedgerEntry): Promise<void>;
  log: DaemonLogger;
  notifier: Notifier;
  now(): Date;
}

/** What a dry run judges against: it never learns what Xen implements. */
const DRY_RUN_ASSUMPTION: Capability = { kind: interfaceFor(null).name, xenVersion: 'unknown (dry run)' };

/**
 * pmem2 before pmem10. One collator for every snapshot: localeCompare with options builds a new
 * one per comparison, which made each state write cost milliseconds on a host with 1024 devices.
 */
const DEVICE_ORDER = new Intl.Collator('en', { numeric: true });

/** state.json is for people; one write per this interval is fresh enough for `xen-pmem status`. */
const SAVE_SPACING_MS = 100;

const PMEM_DISK = /^pmem\d+(\.\d+)?$/;
const PMEM_PARTITION = /^(pmem\d+(?:\.\d+)?)p\d+$/;
const ND_NAMESPACE = /^namespace\d+\.\d+$/;

interface Worker {
  running: Promise<void> | null;
  dirty: boolean;
  /** The last event said the device went away: confirm against sysfs before scanning. */
  removalHint: boolean;
  /** A model read moments ago by the coldplug listing; used once instead of reading sysfs again. */
  listed: PmemNamespaceModel | null;
  retryTimer: NodeJS.Timeout | null;
  attempts: number;
}

export class Controller {
  private readonly records = new Map<string, DeviceRecord>();
  private readonly workers = new Map<string, Worker>();
  private ledger: LedgerEntry[] = [];
  private lock: Promise<void> = Promise.resolve();
  /** The capability the journal was last told of; the bridge owns the answer itself. */
  private told: Capability | null = null;
  private ready = false;
  private stopped = false;
  private readonly startedAt: string;

  constructor(private readonly config: Config, private readonly ports: DaemonPorts, previous: DaemonState | null) {
    this.startedAt = ports.now().toISOString();
    if (previous) {
      this.ledger = previous.ledger.map((entry) => ({ ...entry, request: { ...entry.request } }));
      // Keep what status showed before the restart; coldplug refreshes every device still present.
      for (const record of previous.devices) this.records.set(record.device, record);
    }
  }

  /**
   * Probes the hypervisor once and says in plain words what that means for every device. A dry
   * run makes no hypercall, the probe included, so it learns nothing and returns null.
   */
  probeHypervisor(): Capability | null {
    if (this.config.dryRun) {
      this.ports.log.notice({ capability: 'dry-run' }, `dry run: no hypercall is made, not even the probe of the hypervisor; each valid pmem device is logged with the ${interfaceFor(null).title} it would get`);
      return null;
    }
    return this.hypervisorCapability();
  }

  /**
   * What the hypervisor implements, asked of the bridge at every decision: the bridge keeps a
   * definite answer and asks Xen again only after a failed or denied probe, so a denial that is
   * lifted is seen at the next event or retry. The journal hears of each new answer once.
   */
  private hypervisorCapability(): Capability {
    const capability = this.ports.bridge.capability();
    if (this.told && sameCapability(this.told, capability)) return capability;
    this.told = capability;
    if (capability.kind !== 'unsupported') {
      this.ports.log.info({ capability: capability.kind, xenVersion: capability.xenVersion }, `Xen ${capability.xenVersion} implements ${interfaceFor(capability).title}; valid pmem devices will be reported`);
    } else {
      // Notice, not warning: each valid device it affects gets its own warning line, so
      // `journalctl -p warning` shows one line per device, as operators count them.
      this.ports.log.notice({ capability: capability.reason }, `pmem will not be reported to Xen: ${capability.message}`);
    }
    return capability;
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
      const key = keyOf(model);
      present.add(key);
      this.schedule(key, false, model);
    }
    // Devices the previous run knew that are gone now.
    for (const key of [...this.records.keys()]) {
      if (!present.has(key) && this.records.get(key)!.state !== 'removed') this.schedule(key, true);
    }
    await this.idle();
    this.ready = true;
    await this.persist(true);
  }

  private readonly lookups = new Set<Promise<void>>();
  private readonly recordedThisRun = new Set<string>();
  private queuedSave: Promise<void> | null = null;
  private lastSave: Promise<void> = Promise.resolve();
  private lastSaveEnd = 0;
  /** The next write may not wait for its spacing: coldplug is done, or the daemon stops. */
  private saveNow = false;
  private wakeSave: (() => void) | null = null;

  handleEvent(event: DeviceEvent): void {
    if (this.stopped) return;
    if (event.subsystem === 'block') {
      const partition = PMEM_PARTITION.exec(event.sysname);
      // A partition changing can cut into the reserved area: judge its disk again.
      if (partition) this.schedule(partition[1]!, false);
      else if (PMEM_DISK.test(event.sysname)) this.schedule(event.sysname, event.action === 'remove');
      return;
    }
    if (event.subsystem === 'nd' && ND_NAMESPACE.test(event.sysname)) {
      // Namespaces without a block device (devdax, disabled) are known only by their nd events.
      const lookup = this.resolveNamespaceEvent(event).finally(() => this.lookups.delete(lookup));
      this.lookups.add(lookup);
    }
  }

  private async resolveNamespaceEvent(event: DeviceEvent): Promise<void> {
    try {
      const model = event.action === 'remove' || event.action === 'unbind' ? null : await this.ports.readBySyspath(event.syspath);
      if (model) {
        const key = keyOf(model);
        // The seed namespace a region keeps for ndctl (size 0) sends nd events too, but it is no
        // device: coldplug and decideDevice both go by listNamespaces, which leaves seeds out, so
        // a record made for one could only ever read "removed".
        if (!model.block && !this.records.has(key) && !(await this.ports.listNamespaces()).some((listed) => keyOf(listed) === key)) return;
        this.schedule(key, false);
      } else if (this.records.has(event.sysname)) {
        this.schedule(event.sysname, true);
      }
    } catch (error) {
      this.ports.log.error({ device: event.sysname, reason: 'internal-error' }, `${event.sysname}: cannot resolve the namespace event: ${messageOf(error)}`);
    }
  }

  /** Resolves when no device has work queued or running, nor a namespace event being looked up (retry timers do not count). */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.workers.values()].map((w) => w.running).filter((p): p is Promise<void> => p !== null);
      running.push(...this.lookups);
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const worker of this.workers.values()) {
      if (worker.retryTimer) clearTimeout(worker.retryTimer);
      worker.retryTimer = null;
      worker.dirty = false;
    }
    await this.idle();
    await this.persist(true);
  }

  snapshot(): DaemonState {
    return {
      version: 1,
      pid: process.pid,
      startedAt: this.startedAt,
      updatedAt: this.ports.now().toISOString(),
      ready: this.ready,
      capability: this.told,
      devices: [...this.records.values()].sort((a, b) => DEVICE_ORDER.compare(a.device, b.device)),
      ledger: [...this.ledger].sort((a, b) => DEVICE_ORDER.compare(a.device, b.device)),
    };
  }

  summary(): string {
    const counts = new Map<DeviceState, number>();
    for (const record of this.records.values()) counts.set(record.state, (counts.get(record.state) ?? 0) + 1);
    const parts = [...counts.entries()].sort().map(([state, count]) => `${count} ${state}`);
    return parts.length === 0 ? 'no pmem devices' : `pmem devices: ${parts.join(', ')}`;
  }

  private schedule(key: string, removalHint: boolean, listed: PmemNamespaceModel | null = null): void {
    if (this.stopped) return;
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
    if (!worker.running) worker.running = this.drain(key, worker);
  }

  private async drain(key: string, worker: Worker): Promise<void> {
    // Let the rest of a burst (udev delivers several events per read) land first.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (worker.dirty && !this.stopped) {
      worker.dirty = false;
      const hint = worker.removalHint;
      const listed = worker.listed;
      worker.removalHint = false;
      worker.listed = null;
      let outcome: Outcome & { model?: PmemNamespaceModel };
      try {
        outcome = await this.decideDevice(key, hint, listed);
      } catch (error) {
        outcome = { state: 'failed', reason: 'internal-error', severity: 'error', message: `${key}: unexpected error while deciding: ${messageOf(error)}` };
      }
      this.record(key, outcome, worker);
    }
    worker.running = null;
  }

  private async decideDevice(key: string, removalHint: boolean, listed: PmemNamespaceModel | null): Promise<Outcome & { model?: PmemNamespaceModel }> {
    const model = listed ?? await this.readModel(key);
    if (!model) return removalOutcome(key, this.records.get(key));
    const admission = admit(model, this.config);
    if (admission) return { ...admission, model };
    if (!isSupportedPmem(model)) {
      return { state: 'rejected', reason: 'not-mappable', severity: 'warn', model, message: `${key}: cannot be mapped to physical addresses` };
    }
    let verdict: Verdict;
    try {
      verdict = await this.scan(model.block.devPath, model.namespaceUuid);
    } catch (error) {
      // A device removed during its scan ends as removed, not as an I/O failure.
      if (removalHint || !(await this.readModel(key))) return removalOutcome(key, this.records.get(key));
      return { state: 'retrying', reason: 'io-error', severity: 'warn', model, message: `${key}: cannot read ${model.block.devPath}: ${messageOf(error)}` };
    }
    const outcome = await this.withLock(() => this.judgeAndReport(key, model, verdict));
    const notes = verdict.status === 'valid' && verdict.notes.length > 0 ? verdict.notes : undefined;
    return notes ? { ...outcome, model, notes } : { ...outcome, model };
  }

  private async readModel(key: string): Promise<PmemNamespaceModel | null> {
    if (PMEM_DISK.test(key)) return this.ports.readByBlockName(key);
    const namespaces = await this.ports.listNamespaces();
    return namespaces.find((model) => keyOf(model) === key) ?? null;
  }

  private async scan(devPath: string, namespaceUuid: string | null): Promise<Verdict> {
    const reader = await this.ports.openReader(devPath);
    try {
      return await scanDevice(reader, { namespaceUuid });
    } finally {
      await reader.close().catch(() => undefined);
    }
  }

  private async judgeAndReport(key: string, model: Parameters<typeof judgeForXen>[0], verdict: Verdict): Promise<Outcome> {
    // In a dry run nothing is asked of Xen: judge as if it implemented pmem_add, so that the
    // outcome carries the exact request instead of "not a Dom0".
    const capability = this.config.dryRun ? DRY_RUN_ASSUMPTION : this.hypervisorCapability();
    const judgement = judgeForXen(model, verdict, this.ledger, capability);
    if (judgement.kind === 'outcome') return judgement.outcome;
    const { layout, confirming } = judgement;
    if (this.config.dryRun) {
      return interpretAnswer(key, layout, this.ports.bridge.report(layout.request, []), false);
    }
    let entry = this.ledger.find((e) => e.uuid === layout.uuid && sameRequest(e.request, layout.request));
    if (!entry) {
      const pending: LedgerEntry = { interface: interfaceFor(capability).name, device: key, uuid: layout.uuid, request: layout.request, status: 'pending', at: this.ports.now().toISOString() };
      try {
        await this.ports.recordLedger('pending', pending);
      } catch (error) {
        return { state: 'retrying', reason: 'state-unwritable', severity: 'error', layout, message: `${key}: not reported, because the exactly-once record could not be written: ${messageOf(error)}` };
      }
      this.ledger.push(pending);
      entry = pending;
    }
    const already = this.ledger.filter((e) => e !== entry).map(({ request }) => ({ spfn: request.spfn, epfn: request.epfn }));
    const answer = this.ports.bridge.report(layout.request, already);
    const outcome = interpretAnswer(key, layout, answer, confirming);
    let step: LedgerOp | null = null;
    if (outcome.state === 'reported') {
      entry.status = 'reported';
      entry.at = this.ports.now().toISOString();
      step = 'reported';
    } else if (!confirming) {
      // Xen did not take it: forget the intent so a later attempt is a first attempt.
      this.ledger = this.ledger.filter((e) => e !== entry);
      step = 'dropped';
    }
    if (step) {
      try {
        await this.ports.recordLedger(step, entry);
      } catch (error) {
        this.ports.log.error({ device: key, reason: 'state-unwritable' }, `${key}: the answer from Xen could not be recorded: ${messageOf(error)}; it will be confirmed after a restart`);
      }
    }
    return outcome;
  }

  private withLock<T>(work: () => Promise<T>): Promise<T> {
    const run = this.lock.then(work);
    this.lock = run.then(() => undefined, () => undefined);
    return run;
  }

  private record(key: string, found: Outcome & { model?: PmemNamespaceModel }, worker: Worker): void {
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
    const layout = outcome.layout ?? (outcome.state === 'removed' ? previous?.layout : undefined);
    if (layout) record.layout = layout;
    if (outcome.notes) record.notes = outcome.notes;

    if (outcome.state === 'retrying' && !this.stopped) {
      const delay = Math.min(this.config.retry.initialMs * 2 ** worker.attempts, this.config.retry.maxMs);
      worker.attempts++;
      record.nextAttempt = new Date(now.getTime() + delay).toISOString();
      // A burst can end several passes in retrying: only the last one's retry stays due.
      if (worker.retryTimer) clearTimeout(worker.retryTimer);
      worker.retryTimer = setTimeout(() => {
        worker.retryTimer = null;
        this.schedule(key, false);
      }, delay);
      worker.retryTimer.unref();
    } else {
      worker.attempts = 0;
    }
    this.records.set(key, record);

    const fields: LogFields = { device: key, state: outcome.state, reason: outcome.reason, ...(outcome.layout ? layoutToFields(outcome.layout) : {}) };
    if (changed) {
      // A damaged copy does not stop the device, but it is the operator's to repair (setup again
      // when the device is free): a warning of its own, before the outcome it led to.
      for (const note of outcome.notes ?? []) this.ports.log.warn({ device: key, reason: 'superblock-copy-damaged' }, `${key}: ${note}`);
      this.ports.log[outcome.severity](fields, outcome.message);
    } else {
      this.ports.log.debug(fields, outcome.message);
    }
    if (changed) {
      this.ports.notifier.status(this.summary());
      // Not awaited: the next decision must not wait for a file that only people read. persist()
      // logs its own failures.
      void this.persist();
    }
  }

  /**
   * Saves state.json (device records and a copy of the ledger, for `xen-pmem status`) as it is
   * when the write starts. Calls that arrive while a write is queued share it, and writes are
   * spaced SAVE_SPACING_MS apart, so a coldplug of a thousand devices costs a handful of writes.
   * Exactly-once does not depend on this file: the ledger journal is written on its own.
   */
  private persist(immediately = false): Promise<void> {
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

function sameCapability(a: Capability, b: Capability): boolean {
  if (a.kind !== 'unsupported' || b.kind !== 'unsupported') return a.kind === b.kind;
  return a.reason === b.reason && a.message === b.message;
}

