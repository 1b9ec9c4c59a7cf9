// The exactly-once reporter: judges a valid layout against the ledger and the hypervisor's rules
// and, when it is to be reported, writes the ledger entry (pending), makes the report through the
// bridge, and writes the answer (reported, or dropped). The pending entry is on disk before the
// hypercall is made (docs/daemon.md).
//
// Reports go in batches (group commit): the devices judged in one turn of the event loop have
// their pending lines written with one fdatasync, their hypercalls made one at a time (Xen takes
// platform ops one at a time anyway, under its xenpf_lock), and their answers written with one
// fdatasync. A hypercall leaves the event loop free, so a device whose decision needs none
// (absent, invalid, already reported, unsupported) is decided at once, even while Xen is slow with
// another device's add. Only a device whose region overlaps one in a batch waits, for that answer
// decides its own judgement: a region can never be judged against an add still under way, so
// nothing can be reported twice.
//
// Right before its add, a device's parent (namespace or pfn device) is unbound from its driver: Xen
// refuses a region any domain still maps. When Xen refuses the region, it is bound again.
//
// When the ledger is gone (a new boot, or a lost /run) or a crash left a line pending, Xen is
// asked what it holds before the first report: a pending add Xen lists with the same six PFNs was
// made, any other was not; a region Xen lists that no ledger line explains is judged against.

import { messageOf } from '../core/errno.js';
import { rangesOverlap } from '../core/units.js';
import type { Verdict } from '../core/validate.js';
import type { LedgerEntry, PhysicalLayout, UnboundDriver } from '../format/records.js';
import { layoutText } from '../format/serializers.js';
import type { SupportedPmemNamespace } from '../sysfs/types.js';
import type { BridgeAnswer, Capability, HeldRegion, PmemReport, Query, RuleCheck } from '../xen/interface.js';
import { interfaceNamed } from '../xen/interfaces/index.js';
import { dryRunOutcome, interpretAnswer, judgeForXen, sameRequest, type Outcome } from './decide.js';
import { messageIdOf } from './catalog.js';
import type { LedgerStep } from './ledger.js';
import { MESSAGE_ID_FIELD, type DaemonLogger } from './log.js';
import type { DriverPort } from './ports.js';

/**
 * The bridge as the reporter uses it: the one owner of what the hypervisor implements, and the
 * report. Both answer when the hypervisor has; the event loop runs meanwhile.
 */
export interface HypervisorPort {
  capability(): Promise<Capability>;
  /** The proven interface's rules (the first interface's before any is proven). */
  check(report: PmemReport, alreadyAdded: readonly PmemReport[]): RuleCheck;
  report(request: PmemReport): Promise<BridgeAnswer>;
  /** Every region Xen holds. */
  held(): Promise<Query<HeldRegion[]>>;
  /** The add in the interface's own words: `XENPF_pmem add spfn=0x… …`. */
  describe(report: PmemReport): string;
  /** The name of the interface reports go through. */
  interfaceName(): string;
}

export interface ReporterPorts {
  bridge: HypervisorPort;
  drivers: DriverPort;
  /** The exactly-once journal: every line of the group on disk (one sync) when it resolves. */
  recordLedger(steps: readonly LedgerStep[]): Promise<void>;
  log: DaemonLogger;
  now(): Date;
}

/** A device judged to be reported, waiting in a batch for its hypercall. */
interface Job {
  key: string;
  /** The block device whose parent is unbound before the add. */
  block: { name: string; syspath: string };
  layout: PhysicalLayout;
  confirming: boolean;
  /** The ledger entry: a new one whose pending line the batch writes, or the one a crash left pending. */
  entry: LedgerEntry;
  fresh: boolean;
  resolve(outcome: Outcome): void;
  /** The outcome, once the answer is recorded: what overlapping judgements wait for. */
  done: Promise<Outcome>;
}

export class ExactlyOnceReporter {
  private ledger: LedgerEntry[];
  /** Judged, not yet in a batch. */
  private queued: Job[] = [];
  /** Queued or in the batch under way: their regions are not to be judged against yet. */
  private readonly unsettled = new Set<Job>();
  /** The batch loop, while it runs. */
  private pumping: Promise<void> | null = null;
  /** The job whose hypercall is under way. */
  private sending: Job | null = null;
  private stopping = false;
  /** The capability the journal was last told of; the bridge owns the answer itself. */
  private told: Capability | null = null;
  /** Regions Xen listed that no ledger entry explains. */
  private listed: PmemReport[] = [];
  /** Xen's list, asked once the ledger cannot be trusted alone; null once it needs no asking. */
  private reconciling: Promise<void> | null = null;
  private reconciled: boolean;
  /** Pending entries Xen listed with the same PFNs: reported by a run that stopped before recording it. */
  private readonly confirmedByXen = new Set<LedgerEntry>();
  /**
   * Xen's definite refusals in this run, by super block and request. The refusal binds the driver
   * again, which brings the disk back with a new event: without this, the same add would be sent
   * again at every such event. A new layout (another uuid or other PFNs) is sent.
   */
  private readonly refusedByXen = new Map<string, Outcome>();

  /**
   * `ledgerKnown`: the journal was there and read whole. Without it (a new boot, a lost /run) or
   * with a pending line in it, Xen is asked what it holds before the first report.
   */
  constructor(private readonly ports: ReporterPorts, private readonly dryRun: boolean, ledger: readonly LedgerEntry[], ledgerKnown: boolean) {
    this.ledger = ledger.map((entry) => ({ ...entry, request: { ...entry.request } }));
    this.reconciled = dryRun || (ledgerKnown && this.ledger.every((entry) => entry.status === 'reported'));
  }

  /** The ledger as it stands, for state.json. */
  entries(): readonly LedgerEntry[] {
    return this.ledger;
  }

  /** What the hypervisor was last found to implement; null before the first question (and in a dry run). */
  capability(): Capability | null {
    return this.told;
  }

  /**
   * Asks the hypervisor once at start and says in plain words what that means for every device. A
   * dry run makes no hypercall, the probe included, so it learns nothing and returns null.
   */
  async probe(): Promise<Capability | null> {
    if (this.dryRun) {
      this.ports.log.notice({ capability: 'dry-run', [MESSAGE_ID_FIELD]: messageIdOf('hypervisor-not-asked') }, 'dry run: no hypercall is made, not even the probe of the hypervisor; each valid pmem device is logged with the add it would get');
      return null;
    }
    return this.hypervisorCapability();
  }

  /**
   * Asks Xen what it holds, once, before the first judgement after the ledger was lost or left a
   * line pending: pending adds Xen lists with the same six PFNs are recorded as reported, the
   * others as dropped (the add never happened); listed regions no entry explains are kept to judge
   * against. When Xen cannot say, pending adds stay pending and are sent again: Xen's EEXIST
   * already_added for exactly the same region is then the proof.
   */
  private reconcile(): Promise<void> {
    if (this.reconciled) return Promise.resolve();
    this.reconciling ??= (async () => {
      const held = await this.ports.bridge.held();
      this.reconciled = true;
      if (held.kind !== 'answered') {
        this.ports.log.warn({ reason: held.reason }, `cannot ask Xen which pmem regions it holds: ${held.message}; pending reports are sent again, and Xen's EEXIST confirms one it holds`);
        return;
      }
      const regions = held.value.map((region) => region.layout);
      const steps: LedgerStep[] = [];
      for (const entry of this.ledger) {
        if (entry.status !== 'pending') continue;
        if (regions.some((region) => sameRequest(region, entry.request))) {
          entry.status = 'reported';
          this.confirmedByXen.add(entry);
          steps.push({ op: 'reported', entry });
        } else {
          steps.push({ op: 'dropped', entry });
        }
      }
      this.ledger = this.ledger.filter((entry) => entry.status === 'reported');
      this.listed = regions.filter((region) => !this.ledger.some((entry) => sameRequest(entry.request, region)));
      if (steps.length > 0) {
        await this.ports.recordLedger(steps).catch((error: unknown) => {
          this.ports.log.error({ reason: 'state-unwritable' }, `cannot record what Xen holds in the ledger: ${messageOf(error)}; the next start asks Xen again`);
        });
      }
      this.ports.log.info({ regions: regions.length }, `Xen holds ${regions.length} pmem region${regions.length === 1 ? '' : 's'}; ${steps.filter((step) => step.op === 'reported').length} pending report(s) confirmed, ${steps.filter((step) => step.op === 'dropped').length} found not made`);
    })();
    return this.reconciling;
  }

  /**
   * Judges a scanned device and, when it is to be reported, puts it in the next batch. Resolves
   * with its outcome: at once when no hypercall is needed, else once Xen's answer is recorded.
   */
  async decide(key: string, model: SupportedPmemNamespace, verdict: Verdict): Promise<Outcome> {
    for (;;) {
      // In a dry run nothing is asked of Xen: the layout is judged by the first interface's rules,
      // so that the outcome carries the exact request instead of "not a Dom0".
      const capability = this.dryRun ? null : await this.hypervisorCapability();
      if (capability !== null && capability.kind !== 'unsupported') await this.reconcile();
      const judgement = judgeForXen(model, verdict, { ledger: this.ledger, listed: this.listed, check: (report, added) => this.ports.bridge.check(report, added) }, capability);
      const confirmed = judgement.kind === 'outcome' ? this.confirmedOutcome(key, judgement.outcome) : null;
      if (confirmed) return confirmed;
      // Absent, invalid, not mappable: there is no region, so no add under way can change this.
      if (judgement.kind === 'outcome' && judgement.outcome.layout === undefined) return judgement.outcome;
      const layout = judgement.kind === 'report' ? judgement.layout : judgement.outcome.layout!;
      // An add under way for an overlapping region decides what this one is (overlapping,
      // already reported, or free again once Xen refused it): wait for its answer, then judge.
      const blocker = this.unsettledOverlapping(layout.request);
      if (blocker) {
        await blocker.done;
        continue;
      }
      if (judgement.kind === 'outcome') return judgement.outcome;
      const via = this.ports.bridge.interfaceName();
      // The one place a dry run is decided: the exact add, and nothing sent.
      if (this.dryRun) return { ...dryRunOutcome(key, layout, this.ports.bridge.describe(layout.request)), interface: via };
      if (this.stopping) return notSentOutcome(key, layout);
      const refused = this.refusedByXen.get(refusalKey(layout));
      if (refused) return { ...refused, message: `${refused.message}; Xen refused this exact layout earlier in this run, so it is not sent again: set the device up anew, or restart xen-pmemd once what Xen refused has changed` };
      const known = this.ledger.find((e) => e.uuid === layout.uuid && sameRequest(e.request, layout.request));
      const entry: LedgerEntry = known ?? { interface: via, device: key, uuid: layout.uuid, request: layout.request, status: 'pending', at: this.ports.now().toISOString() };
      return this.enqueue(key, model.block, layout, judgement.confirming, entry, known === undefined);
    }
  }

  /** A device found reported because Xen listed its pending add after a restart: said as such, once. */
  private confirmedOutcome(key: string, outcome: Outcome): Outcome | null {
    if (outcome.reason !== 'reported-earlier' || outcome.layout === undefined) return null;
    const layout = outcome.layout;
    const entry = [...this.confirmedByXen].find((each) => each.uuid === layout.uuid && sameRequest(each.request, layout.request));
    if (!entry) return null;
    this.confirmedByXen.delete(entry);
    return { ...outcome, reason: 'reported-before-restart', catalog: 'reported-before-restart', severity: 'notice', interface: entry.interface,
      message: `${key}: ${layoutText(layout)} was reported to Xen by a run that stopped before recording Xen's answer: Xen lists it with exactly these frames` };
  }

  /**
   * No new hypercall is started: the one under way is answered and recorded, the devices still
   * waiting in a batch are not sent (their pending lines are dropped) and decided again at the
   * next start. Says what is in flight, for the journal.
   */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    const job = this.sending;
    if (job) {
      this.ports.log.notice({ device: job.key, reason: 'stopping-during-report' },
        `stopping while the report of ${job.key} to Xen is under way: waiting for the hypervisor's answer to record it; the ledger holds it as pending, so if the daemon is killed first, the next start confirms it`);
    }
  }

  private unsettledOverlapping(request: PmemReport): Job | undefined {
    for (const job of this.unsettled) {
      if (rangesOverlap(job.layout.request.spfn, job.layout.request.epfn, request.spfn, request.epfn)) return job;
    }
    return undefined;
  }

  private enqueue(key: string, block: { name: string; syspath: string }, layout: PhysicalLayout, confirming: boolean, entry: LedgerEntry, fresh: boolean): Promise<Outcome> {
    let resolve!: (outcome: Outcome) => void;
    const done = new Promise<Outcome>((settle) => { resolve = settle; });
    const job: Job = { key, block, layout, confirming, entry, fresh, resolve, done };
    this.queued.push(job);
    this.unsettled.add(job);
    this.pumping ??= this.pump();
    return done;
  }

  /** Batch after batch while devices are queued. Never throws: every job gets its outcome. */
  private async pump(): Promise<void> {
    try {
      // Let every device judged in this turn join the batch: coldplug judges them all in one.
      await new Promise<void>((resolve) => setImmediate(resolve));
      while (this.queued.length > 0) {
        const batch = this.queued;
        this.queued = [];
        await this.runBatch(batch);
      }
    } finally {
      this.pumping = null;
    }
  }

  private async runBatch(batch: Job[]): Promise<void> {
    const outcomes = new Map<Job, Outcome>();
    const settle = (job: Job, outcome: Outcome): void => {
      this.unsettled.delete(job);
      job.resolve(outcome);
    };
    try {
      // 1. One sync for the pending lines of the whole batch, before any of its hypercalls.
      const fresh = batch.filter((job) => job.fresh);
      let toSend = batch;
      if (this.stopping) {
        toSend = [];
      } else if (fresh.length > 0) {
        try {
          await this.ports.recordLedger(fresh.map((job) => ({ op: 'pending', entry: job.entry })));
          for (const job of fresh) this.ledger.push(job.entry);
        } catch (error) {
          for (const job of fresh) {
            outcomes.set(job, { state: 'retrying', reason: 'state-unwritable', catalog: 'retrying', severity: 'error', layout: job.layout, message: `${job.key}: not reported, because the exactly-once record could not be written: ${messageOf(error)}` });
          }
          toSend = batch.filter((job) => !job.fresh);
        }
      }

      // 2. The hypercalls, one at a time; a stop lets the one under way finish and sends no more.
      const steps: LedgerStep[] = [];
      for (const job of toSend) {
        if (this.stopping) break;
        const { entry } = job;
        this.sending = job;
        let outcome: Outcome;
        try {
          outcome = await this.send(job);
        } finally {
          this.sending = null;
        }
        outcomes.set(job, outcome);
        if (outcome.state === 'reported') {
          entry.status = 'reported';
          entry.at = this.ports.now().toISOString();
          steps.push({ op: 'reported', entry });
        } else if (!job.confirming) {
          // Xen did not take it: forget the intent so a later attempt is a first attempt.
          this.ledger = this.ledger.filter((e) => e !== entry);
          steps.push({ op: 'dropped', entry });
        }
      }
      // Stopped before their turn: no hypercall was made, so their pending lines are withdrawn.
      for (const job of toSend) {
        if (outcomes.has(job)) continue;
        outcomes.set(job, notSentOutcome(job.key, job.layout));
        if (job.fresh && !job.confirming) {
          this.ledger = this.ledger.filter((e) => e !== job.entry);
          steps.push({ op: 'dropped', entry: job.entry });
        }
      }

      // 3. One sync for the answers of the whole batch.
      if (steps.length > 0) {
        try {
          await this.ports.recordLedger(steps);
        } catch (error) {
          for (const { op, entry } of steps) {
            this.ports.log.error({ device: entry.device, reason: 'state-unwritable' }, op === 'reported'
              ? `${entry.device}: the answer from Xen could not be recorded: ${messageOf(error)}; it will be confirmed after a restart`
              : `${entry.device}: withdrawing the exactly-once record failed: ${messageOf(error)}; a restart will send the add once, as a confirmation`);
          }
        }
      }
    } catch (error) {
      // Not expected (the bridge never throws): whatever is unanswered is failed, never lost.
      for (const job of batch) {
        if (!outcomes.has(job)) outcomes.set(job, { state: 'failed', reason: 'internal-error', catalog: 'failed', severity: 'error', layout: job.layout, message: `${job.key}: unexpected error while reporting: ${messageOf(error)}` });
      }
    }
    for (const job of batch) settle(job, outcomes.get(job) ?? notSentOutcome(job.key, job.layout));
  }

  /**
   * One device's add: its parent unbound from its driver (no domain may map the region), the
   * hypercall, and on a refusal its driver bound again so that the operator can fix the layout.
   */
  private async send(job: Job): Promise<Outcome> {
    const { key, layout, entry } = job;
    let unbound: UnboundDriver;
    try {
      unbound = await this.ports.drivers.unbind(job.block);
    } catch (error) {
      return { state: 'retrying', reason: 'unbind-failed', catalog: 'retrying', severity: 'error', layout, interface: entry.interface,
        message: `${key}: not reported: the Dom0 must stop mapping the region first, and ${messageOf(error)}` };
    }
    const answer = await this.ports.bridge.report(layout.request);
    const outcome: Outcome = { ...interpretAnswer(key, layout, answer, job.confirming), interface: entry.interface };
    if (outcome.state === 'reported') return { ...outcome, unbound };
    if (outcome.state === 'rejected') this.refusedByXen.set(refusalKey(layout), outcome);
    try {
      await this.ports.drivers.bind(unbound);
      return { ...outcome, message: `${outcome.message}; ${unbound.device} is bound to ${unbound.driver} again, so the device can be set up anew` };
    } catch (error) {
      return { ...outcome, message: `${outcome.message}; binding ${unbound.device} to ${unbound.driver} again failed: ${messageOf(error)}` };
    }
  }

  /**
   * What the hypervisor implements, asked of the bridge at every decision: the bridge keeps a
   * definite answer and asks Xen again only after a failed or denied probe, so a denial that is
   * lifted is seen at the next event or retry. The journal hears of each new answer once.
   */
  private async hypervisorCapability(): Promise<Capability> {
    const capability = await this.ports.bridge.capability();
    if (this.told && sameCapability(this.told, capability)) return capability;
    this.told = capability;
    if (capability.kind !== 'unsupported') {
      this.ports.log.info({ capability: capability.kind, xenVersion: capability.xenVersion, [MESSAGE_ID_FIELD]: messageIdOf('hypervisor-supported') }, `Xen ${capability.xenVersion} implements ${interfaceNamed(capability.kind)?.title ?? capability.kind}; valid pmem devices will be reported`);
    } else {
      // Notice, not warning: each valid device it affects gets its own warning line, so
      // `journalctl -p warning` shows one line per device, as operators count them.
      this.ports.log.notice({ capability: capability.reason, [MESSAGE_ID_FIELD]: messageIdOf('hypervisor-unsupported') }, `pmem will not be reported to Xen: ${capability.message}`);
    }
    return capability;
  }
}

function refusalKey(layout: PhysicalLayout): string {
  const r = layout.request;
  return [layout.uuid, r.spfn, r.epfn, r.rsvSpfn, r.rsvEpfn, r.dataSpfn, r.dataEpfn].join(' ');
}

/** A device the daemon stopped before reporting: nothing reached Xen; the next start decides it. */
function notSentOutcome(key: string, layout: PhysicalLayout): Outcome {
  return { state: 'retrying', reason: 'stopping', catalog: 'retrying', severity: 'warn', layout, message: `${key}: not reported: the daemon stopped before sending it to Xen; the next start reports it` };
}

function sameCapability(a: Capability, b: Capability): boolean {
  if (a.kind !== 'unsupported' || b.kind !== 'unsupported') return a.kind === b.kind;
  return a.reason === b.reason && a.message === b.message;
}
