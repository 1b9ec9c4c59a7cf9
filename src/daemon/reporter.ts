// The exactly-once reporter: judges a valid layout against the ledger and the hypervisor's rules
// and, when it is to be reported, writes the ledger entry (pending), makes the report through the
// bridge, and writes the answer (reported, or dropped). The step from judging to recording the
// answer runs under one lock, so two devices are never judged against the same ledger and both
// reported; and the pending entry is on disk before the hypercall is made (docs/daemon.md).

import { messageOf } from '../core/errno.js';
import type { Verdict } from '../core/validate.js';
import type { LedgerEntry } from '../format/records.js';
import type { SupportedPmemNamespace } from '../sysfs/types.js';
import type { BridgeAnswer, Capability, PfnRange, PmemReport } from '../xen/interface.js';
import { interfaceFor } from '../xen/interfaces/index.js';
import { interpretAnswer, judgeForXen, sameRequest, type Outcome } from './decide.js';
import { messageIdOf } from './catalog.js';
import type { LedgerOp } from './ledger.js';
import { MESSAGE_ID_FIELD, type DaemonLogger } from './log.js';

/** The bridge as the reporter uses it: the one owner of what the hypervisor implements, and the report. */
export interface HypervisorPort {
  capability(): Capability;
  report(request: PmemReport, alreadyReported: PfnRange[]): BridgeAnswer;
}

export interface ReporterPorts {
  bridge: HypervisorPort;
  /** The exactly-once journal: must be on disk when it resolves. */
  recordLedger(op: LedgerOp, entry: LedgerEntry): Promise<void>;
  log: DaemonLogger;
  now(): Date;
}

export class ExactlyOnceReporter {
  private ledger: LedgerEntry[];
  private lock: Promise<void> = Promise.resolve();
  /** The capability the journal was last told of; the bridge owns the answer itself. */
  private told: Capability | null = null;

  constructor(private readonly ports: ReporterPorts, private readonly dryRun: boolean, ledger: readonly LedgerEntry[]) {
    this.ledger = ledger.map((entry) => ({ ...entry, request: { ...entry.request } }));
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
  probe(): Capability | null {
    if (this.dryRun) {
      this.ports.log.notice({ capability: 'dry-run', [MESSAGE_ID_FIELD]: messageIdOf('hypervisor-not-asked') }, `dry run: no hypercall is made, not even the probe of the hypervisor; each valid pmem device is logged with the ${interfaceFor(null).title} it would get`);
      return null;
    }
    return this.hypervisorCapability();
  }

  /** Judges a scanned device and reports it when it is to be reported, under the lock. */
  decide(key: string, model: SupportedPmemNamespace, verdict: Verdict): Promise<Outcome> {
    const run = this.lock.then(() => this.judgeAndReport(key, model, verdict));
    this.lock = run.then(() => undefined, () => undefined);
    return run;
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
      this.ports.log.info({ capability: capability.kind, xenVersion: capability.xenVersion, [MESSAGE_ID_FIELD]: messageIdOf('hypervisor-supported') }, `Xen ${capability.xenVersion} implements ${interfaceFor(capability).title}; valid pmem devices will be reported`);
    } else {
      // Notice, not warning: each valid device it affects gets its own warning line, so
      // `journalctl -p warning` shows one line per device, as operators count them.
      this.ports.log.notice({ capability: capability.reason, [MESSAGE_ID_FIELD]: messageIdOf('hypervisor-unsupported') }, `pmem will not be reported to Xen: ${capability.message}`);
    }
    return capability;
  }

  private async judgeAndReport(key: string, model: SupportedPmemNamespace, verdict: Verdict): Promise<Outcome> {
    // In a dry run nothing is asked of Xen: judge as if it implemented the first interface, so
    // that the outcome carries the exact request instead of "not a Dom0".
    const capability: Capability = this.dryRun ? { kind: interfaceFor(null).name, xenVersion: 'unknown (dry run)' } : this.hypervisorCapability();
    const judgement = judgeForXen(model, verdict, this.ledger, capability);
    if (judgement.kind === 'outcome') return judgement.outcome;
    const { layout, confirming } = judgement;
    const via = interfaceFor(capability).name;
    if (this.dryRun) {
      return { ...interpretAnswer(key, layout, this.ports.bridge.report(layout.request, []), false), interface: via };
    }
    let entry = this.ledger.find((e) => e.uuid === layout.uuid && sameRequest(e.request, layout.request));
    if (!entry) {
      const pending: LedgerEntry = { interface: via, device: key, uuid: layout.uuid, request: layout.request, status: 'pending', at: this.ports.now().toISOString() };
      try {
        await this.ports.recordLedger('pending', pending);
      } catch (error) {
        return { state: 'retrying', reason: 'state-unwritable', catalog: 'retrying', severity: 'error', layout, message: `${key}: not reported, because the exactly-once record could not be written: ${messageOf(error)}` };
      }
      this.ledger.push(pending);
      entry = pending;
    }
    const already = this.ledger.filter((e) => e !== entry).map(({ request }) => ({ spfn: request.spfn, epfn: request.epfn }));
    const answer = this.ports.bridge.report(layout.request, already);
    const outcome: Outcome = { ...interpretAnswer(key, layout, answer, confirming), interface: entry.interface };
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
}

function sameCapability(a: Capability, b: Capability): boolean {
  if (a.kind !== 'unsupported' || b.kind !== 'unsupported') return a.kind === b.kind;
  return a.reason === b.reason && a.message === b.message;
}
