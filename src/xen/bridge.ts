// Policy over the hypercall port: prove which hypervisor interface Xen implements before trusting
// any answer (walking the table in src/xen/interfaces/), then turn one report's outcome into an
// answer the daemon can act on. It never throws: whatever goes wrong becomes a tagged answer with
// a sentence. The bridge is the one owner of what the hypervisor implements. Its answers come as
// promises, because the hypercalls under them leave the event loop free while Xen works.

import { HYPERVISOR_INTERFACES } from './interfaces/index.js';
import type { BridgeAnswer, Capability, HypervisorInterface, PfnRange, PmemReport } from './interface.js';
import { XENVER_EXTRAVERSION, XENVER_EXTRAVERSION_BYTES, XENVER_VERSION } from './platform-op.js';
import type { HypercallPort } from './ports.js';
import { errnoName } from '../core/errno.js';

export type { BridgeAnswer, Capability } from './interface.js';

export interface BridgeOptions {
  /** Log what would be sent and make no hypercall at all, not even the probe. */
  dryRun: boolean;
  /** Why there is no port (openXencall's sentence), shown when `port` is null. */
  unavailable?: string;
}

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
  private proven: Capability | null = null;
  /** The probe under way: decisions that ask meanwhile share it rather than probing again. */
  private probing: Promise<Capability> | null = null;

  constructor(
    private readonly port: HypercallPort | null,
    private readonly options: BridgeOptions,
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

  private async probe(): Promise<Capability> {
    if (!this.port) {
      return {
        kind: 'unsupported',
        reason: 'not-dom0',
        message: this.options.unavailable ?? 'no hypercall interface: this is not a Xen Dom0',
      };
    }
    try {
      return await this.probeWith(this.port);
    } catch (error) {
      return probeFailed(`probing the hypervisor failed inside libxencall: ${(error as Error).message}`);
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

  /** The interface reports go through now: the proven one, else the first of the table. */
  private current(): HypervisorInterface {
    const proven = this.proven;
    return (proven && proven.kind !== 'unsupported' ? this.interfaces.find((each) => each.name === proven.kind) : undefined) ?? this.interfaces[0]!;
  }

  /**
   * Reports one region to Xen. `alreadyReported` holds the regions this side believes Xen has;
   * it only shapes the explanation of a refusal. Refusing a request that breaks the rules before
   * calling is the caller's choice (the interface's `check`); this sends what it is given.
   */
  async report(req: PmemReport, alreadyReported: PfnRange[]): Promise<BridgeAnswer> {
    try {
      return await this.reportUnguarded(req, alreadyReported);
    } catch (error) {
      return { kind: 'error', errno: 0, reason: 'exception', message: `${this.current().title} failed: ${(error as Error).message}` };
    }
  }

  private async reportUnguarded(req: PmemReport, alreadyReported: PfnRange[]): Promise<BridgeAnswer> {
    if (this.options.dryRun) {
      const iface = this.current();
      const verdict = iface.check(req, alreadyReported);
      return {
        kind: 'dry-run',
        message: `dry run, no hypercall made: ${iface.title} ${iface.describe(req)}; ${
          verdict.ok ? 'the pmem hypervisor would accept it' : `the pmem hypervisor would refuse it (rule ${verdict.rule}: ${verdict.message})`
        }`,
      };
    }

    const capability = await this.capability();
    if (capability.kind === 'unsupported') {
      return { kind: 'unsupported', reason: capability.reason, message: capability.message };
    }
    const iface = this.current();
    // capability() proved an interface, so a port exists.
    const result = await iface.send(this.port!, iface.encode(req));
    return iface.readAnswer(req, result, alreadyReported);
  }
}
