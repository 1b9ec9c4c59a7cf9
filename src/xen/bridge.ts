// Policy over the hypercall port: prove which hypervisor interface Xen implements before trusting
// any answer (walking the table in src/xen/interfaces/), then send adds and ask what Xen holds
// through that interface. It never throws: whatever goes wrong becomes a tagged answer with a
// sentence. The bridge is the one owner of what the hypervisor implements and the one place the
// interface is chosen. Its answers come as promises, because the hypercalls under them leave the
// event loop free while Xen works. The port is opened at the first question, so a run that asks
// nothing (a dry run) never loads libxencall.

import { HYPERVISOR_INTERFACES } from './interfaces/index.js';
import type { AssignAnswer, BridgeAnswer, Capability, GuestFrames, HeldRegion, HypervisorInterface, OwnerRun, PfnRange, PmemReport, Query, RuleCheck } from './interface.js';
import { XENVER_EXTRAVERSION, XENVER_EXTRAVERSION_BYTES, XENVER_VERSION } from './xenpf-pmem.js';
import type { HypercallPort, PortOpening } from './ports.js';
import { errnoName, messageOf } from '../core/errno.js';

export type { BridgeAnswer, Capability } from './interface.js';

function readExtraversion(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  const text = bytes.subarray(0, end === -1 ? bytes.length : end).toString('latin1');
  // A hypervisor string goes into log lines; keep only what prints.
  return text.replace(/[^\x20-\x7e]/g, '');
}

function probeFailed(message: string): Capability {
  return { kind: 'unsupported', reason: 'probe-failed', message };
}

export class HypercallBridge {
  private opening: PortOpening | null = null;
  private proven: Capability | null = null;
  /** The probe under way: decisions that ask meanwhile share it rather than probing again. */
  private probing: Promise<Capability> | null = null;

  constructor(
    private readonly open: () => PortOpening,
    private readonly interfaces: readonly HypervisorInterface[] = HYPERVISOR_INTERFACES,
  ) {}

  /**
   * What the hypervisor implements. A definite answer is kept for the bridge's life and asked
   * for no more; `probe-failed` (a denial or an odd errno) is not, so the next call asks again.
   */
  capability(): Promise<Capability> {
    if (this.proven) return Promise.resolve(this.proven);
    this.probing ??= this.probe().then((answer) => {
      if (answer.kind !== 'unsupported' || answer.reason !== 'probe-failed') this.proven = answer;
      this.probing = null;
      return answer;
    });
    return this.probing;
  }

  /** The interface reports go through now: the proven one, else the first of the table. */
  current(): HypervisorInterface {
    const proven = this.proven;
    return (proven && proven.kind !== 'unsupported' ? this.interfaces.find((each) => each.name === proven.kind) : undefined) ?? this.interfaces[0]!;
  }

  /** The current interface's rules on a report (what the daemon judges a layout by, once). */
  check(report: PmemReport, alreadyAdded: readonly PmemReport[]): RuleCheck {
    return this.current().check(report, alreadyAdded);
  }

  /** The name of the interface reports go through. */
  interfaceName(): string {
    return this.current().name;
  }

  /** An add in the current interface's own words, for logs. */
  describe(report: PmemReport): string {
    return this.current().describe(report);
  }

  /** Reports one region to Xen through the proven interface; never throws. */
  async report(report: PmemReport): Promise<BridgeAnswer> {
    try {
      const ready = await this.ready();
      if ('reason' in ready) return { kind: 'unsupported', reason: ready.reason, message: ready.message };
      return await ready.iface.add(ready.port, report);
    } catch (error) {
      return { kind: 'error', errno: 0, reason: 'exception', message: `${this.current().title} failed: ${messageOf(error)}` };
    }
  }

  /** Every region Xen holds, or why that cannot be known. */
  held(): Promise<Query<HeldRegion[]>> {
    return this.query((iface, port) => iface.regions(port));
  }

  /** Who holds the data frames of `range`, or why that cannot be known. */
  owners(range: PfnRange): Promise<Query<OwnerRun[]>> {
    return this.query((iface, port) => iface.owners(port, range));
  }

  /** Gives data frames to a guest; never throws. */
  async assign(frames: GuestFrames): Promise<AssignAnswer> {
    try {
      const ready = await this.ready();
      if ('reason' in ready) return { kind: 'refused', errno: 0, reason: ready.reason, message: ready.message };
      return await ready.iface.assign(ready.port, frames);
    } catch (error) {
      return { kind: 'refused', errno: 0, reason: 'exception', message: `${this.current().title} assign failed: ${messageOf(error)}` };
    }
  }

  /** Releases the port once the calls under way have answered. */
  close(): void {
    if (this.opening?.kind === 'opened') this.opening.port.close();
  }

  private async query<T>(ask: (iface: HypervisorInterface, port: HypercallPort) => Promise<Query<T>>): Promise<Query<T>> {
    try {
      const ready = await this.ready();
      if ('reason' in ready) return { kind: 'unavailable', reason: ready.reason, message: ready.message };
      return await ask(ready.iface, ready.port);
    } catch (error) {
      return { kind: 'unavailable', reason: 'exception', message: `asking Xen what it holds failed: ${messageOf(error)}` };
    }
  }

  private async ready(): Promise<{ iface: HypervisorInterface; port: HypercallPort } | { reason: string; message: string }> {
    const capability = await this.capability();
    if (capability.kind === 'unsupported') return capability;
    // capability() proved an interface, so the port is open.
    return { iface: this.current(), port: (this.opening as Extract<PortOpening, { kind: 'opened' }>).port };
  }

  private async probe(): Promise<Capability> {
    this.opening ??= this.open();
    if (this.opening.kind !== 'opened') {
      return { kind: 'unsupported', reason: 'not-dom0', message: this.opening.message };
    }
    try {
      return await this.probeWith(this.opening.port);
    } catch (error) {
      return probeFailed(`probing the hypervisor failed inside libxencall: ${messageOf(error)}`);
    }
  }

  /**
   * Names the hypervisor (xen_version, for every sentence), then asks each interface in the
   * table's order. The first one proven wins; with none, an unproven answer is the answer (so it
   * is asked again), and otherwise the first interface's reason.
   */
  private async probeWith(port: HypercallPort): Promise<Capability> {
    const version = await port.xenVersion(XENVER_VERSION, 0);
    if (version.rc < 0) {
      return probeFailed(`xen_version failed with ${errnoName(version.errno)}, so the hypervisor cannot be identified`);
    }
    const extra = await port.xenVersion(XENVER_EXTRAVERSION, XENVER_EXTRAVERSION_BYTES);
    const xenVersion = `${version.rc >>> 16}.${version.rc & 0xffff}${extra.rc >= 0 ? readExtraversion(extra.after) : ''}`;

    let first: Capability | null = null;
    let unproven: Capability | null = null;
    for (const iface of this.interfaces) {
      const presence = await iface.probe(port, xenVersion);
      if (presence.present) return { kind: iface.name, xenVersion };
      const answer: Capability = { kind: 'unsupported', reason: presence.reason, message: presence.message };
      first ??= answer;
      if (presence.reason === 'probe-failed') unproven ??= answer;
    }
    return unproven ?? first ?? probeFailed('no hypervisor interface is known to this bridge');
  }
}
