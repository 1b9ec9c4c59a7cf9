// Policy over the hypercall port: prove that the hypervisor implements XENPF_pmem_add before
// trusting any answer to platform op 64, then turn one add's outcome into an answer the daemon
// can act on. It never throws: whatever goes wrong becomes a tagged answer with a sentence.

import { constants } from 'node:os';

import { errnoName } from '../core/errno.js';
import { halfOpenRange } from '../core/units.js';
import type { HypercallPort, HypercallResult } from './ports.js';
import {
  checkPmemAddLikeXen,
  describePmemAdd,
  encodePmemAdd,
  PLATFORM_OP_BYTES,
  PMEM_ADD_PAYLOAD_END,
  XENVER_EXTRAVERSION,
  XENVER_EXTRAVERSION_BYTES,
  XENVER_VERSION,
  type PfnRange,
  type PmemAddRequest,
} from './platform-op.js';

export type Capability =
  | { kind: 'pmem-add'; xenVersion: string }
  | {
      kind: 'unsupported';
      reason: 'not-dom0' | 'enosys' | 'cmd-64-is-another-operation' | 'probe-failed';
      message: string;
    };

export type BridgeAnswer =
  | { kind: 'reported' }
  | { kind: 'dry-run'; message: string }
  | { kind: 'unsupported'; reason: string; message: string }
  | { kind: 'rejected'; errno: number; reason: string; message: string }
  | { kind: 'retry'; errno: number; reason: string; message: string }
  | { kind: 'error'; errno: number; reason: string; message: string };

export interface BridgeOptions {
  /** Log what would be sent and make no hypercall at all, not even the probe. */
  dryRun: boolean;
  /** Why there is no port (openXencall's sentence), shown when `port` is null. */
  unavailable?: string;
}

const { EINVAL, ENOSYS, ENODEV, EAGAIN, EBUSY, ENOMEM, EPERM, EACCES } = constants.errno;

/** Upstream Xen gave platform op 64 to XENPF_get_dom0_console in 4.18.0 (released 2023-11-16). */
const DOM0_CONSOLE_NOTE = 'upstream Xen 4.18 and later define platform op 64 as XENPF_get_dom0_console';

/**
 * The probe: a pmem_add that breaks rule 1 (every PFN zero) with the unused rest of the union
 * filled with a canary. Only the RFC hypervisor answers it with exactly -1/EINVAL and leaves
 * all 136 bytes as they were; ENOSYS means no op 64, and success, another errno or a changed
 * byte mean op 64 is something else. Zero PFNs can never register anything, so it is harmless.
 */
export function pmemAddProbe(): Buffer {
  const probe = encodePmemAdd({ spfn: 0n, epfn: 0n, rsvSpfn: 0n, rsvEpfn: 0n, dataSpfn: 0n, dataEpfn: 0n });
  for (let offset = PMEM_ADD_PAYLOAD_END; offset < PLATFORM_OP_BYTES; offset++) {
    // Position-dependent, so that a copy of the canary to another offset still shows.
    probe[offset] = (0xa5 ^ offset) & 0xff;
  }
  return probe;
}

function firstChangedByte(before: Buffer, after: Buffer): number | null {
  if (after.length !== before.length) return Math.min(before.length, after.length);
  for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) return i;
  return null;
}

function readExtraversion(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  const text = bytes.subarray(0, end === -1 ? bytes.length : end).toString('latin1');
  // A hypervisor string goes into log lines; keep only what prints.
  return text.replace(/[^\x20-\x7e]/g, '');
}

export class HypercallBridge {
  private probed: Capability | null = null;

  constructor(
    private readonly port: HypercallPort | null,
    private readonly options: BridgeOptions,
  ) {}

  /**
   * Proves, once, whether the hypervisor implements XENPF_pmem_add. A definite answer is kept;
   * `probe-failed` (a denial or an odd errno) is not, so the next call asks again.
   */
  capability(): Capability {
    if (this.probed) return this.probed;
    const answer = this.probe();
    if (answer.kind === 'pmem-add' || answer.reason !== 'probe-failed') this.probed = answer;
    return answer;
  }

  private probe(): Capability {
    if (!this.port) {
      return {
        kind: 'unsupported',
        reason: 'not-dom0',
        message: this.options.unavailable ?? 'no hypercall interface: this is not a Xen Dom0',
      };
    }
    try {
      return this.probeWith(this.port);
    } catch (error) {
      return {
        kind: 'unsupported',
        reason: 'probe-failed',
        message: `probing the hypervisor failed inside libxencall: ${(error as Error).message}`,
      };
    }
  }

  private probeWith(port: HypercallPort): Capability {
    const version = port.xenVersion(XENVER_VERSION, 0);
    if (version.rc < 0) {
      return {
        kind: 'unsupported',
        reason: 'probe-failed',
        message: `xen_version failed with ${errnoName(version.errno)}, so the hypervisor cannot be identified`,
      };
    }
    const extra = port.xenVersion(XENVER_EXTRAVERSION, XENVER_EXTRAVERSION_BYTES);
    const xenVersion = `${version.rc >>> 16}.${version.rc & 0xffff}${extra.rc >= 0 ? readExtraversion(extra.after) : ''}`;

    const probe = pmemAddProbe();
    const answer = port.platformOp(probe);
    const changedAt = firstChangedByte(probe, answer.after);
    const other = (what: string): Capability => ({
      kind: 'unsupported',
      reason: 'cmd-64-is-another-operation',
      message: `Xen ${xenVersion} answered an invalid pmem_add (platform op 64) with ${what}, which the pmem hypervisor never does: here op 64 is another operation (${DOM0_CONSOLE_NOTE}), so nothing will be reported`,
    });

    if (changedAt !== null) return other(`a write into the request at byte ${changedAt} (rc ${answer.rc})`);
    if (answer.rc >= 0) return other(`success (rc ${answer.rc})`);
    if (answer.errno === EINVAL) return { kind: 'pmem-add', xenVersion };
    if (answer.errno === ENOSYS) {
      return {
        kind: 'unsupported',
        reason: 'enosys',
        message: `Xen ${xenVersion} does not implement XENPF_pmem_add (platform op 64): it answered ENOSYS, as every upstream Xen does because the pmem patches were never merged; boot a hypervisor built with them`,
      };
    }
    // XENPF_get_dom0_console's answer on a host without a VGA or framebuffer console.
    if (answer.errno === ENODEV) return other('ENODEV');
    const denied = answer.errno === EPERM || answer.errno === EACCES;
    return {
      kind: 'unsupported',
      reason: 'probe-failed',
      message: denied
        ? `Xen ${xenVersion} refused platform op 64 with ${errnoName(answer.errno)}: this domain is not allowed to make platform ops (not the hardware domain, or an XSM policy denies it)`
        : `Xen ${xenVersion} answered the pmem_add probe with ${errnoName(answer.errno)} instead of EINVAL, so pmem_add support is unproven`,
    };
  }

  /**
   * Reports one region to Xen. `alreadyReported` holds the regions this side believes Xen has;
   * it only shapes the explanation of an EINVAL. Refusing a request that breaks the rules before
   * calling is the caller's choice (`checkPmemAddLikeXen`); this sends what it is given.
   */
  pmemAdd(req: PmemAddRequest, alreadyReported: PfnRange[]): BridgeAnswer {
    try {
      return this.pmemAddUnguarded(req, alreadyReported);
    } catch (error) {
      return { kind: 'error', errno: 0, reason: 'exception', message: `XENPF_pmem_add failed: ${(error as Error).message}` };
    }
  }

  private pmemAddUnguarded(req: PmemAddRequest, alreadyReported: PfnRange[]): BridgeAnswer {
    const described = describePmemAdd(req);
    if (this.options.dryRun) {
      const verdict = checkPmemAddLikeXen(req, alreadyReported);
      return {
        kind: 'dry-run',
        message: `dry run, no hypercall made: XENPF_pmem_add ${described}; ${
          verdict.ok ? 'the pmem hypervisor would accept it' : `the pmem hypervisor would refuse it (rule ${verdict.rule}: ${verdict.message})`
        }`,
      };
    }

    const capability = this.capability();
    if (capability.kind === 'unsupported') {
      return { kind: 'unsupported', reason: capability.reason, message: capability.message };
    }
    // capability() returned pmem-add, so a port exists.
    const result: HypercallResult = this.port!.platformOp(encodePmemAdd(req));
    if (result.rc >= 0) return { kind: 'reported' };
    return this.explainFailure(req, alreadyReported, result.errno, described);
  }

  private explainFailure(
    req: PmemAddRequest,
    alreadyReported: PfnRange[],
    errno: number,
    described: string,
  ): BridgeAnswer {
    const name = errnoName(errno);
    if (errno === EINVAL) {
      const view = checkPmemAddLikeXen(req, alreadyReported);
      if (!view.ok) {
        return {
          kind: 'rejected',
          errno,
          reason: view.reason,
          message: `Xen refused XENPF_pmem_add ${described} with EINVAL; in the hypervisor's view rule ${view.rule} fails: ${view.message}`,
        };
      }
      return {
        kind: 'rejected',
        errno,
        reason: 'overlaps-earlier-add',
        message: `Xen refused XENPF_pmem_add ${described} with EINVAL although rules 1-6 hold for what this daemon knows: the region ${halfOpenRange(req.spfn, req.epfn)} overlaps one already added, possibly by an earlier run, or memory Xen already knows (Xen has no remove operation)`,
      };
    }
    if (errno === EAGAIN || errno === EBUSY || errno === ENOMEM) {
      return {
        kind: 'retry',
        errno,
        reason: name.toLowerCase(),
        message: `Xen answered XENPF_pmem_add ${described} with ${name}; nothing was added and the same request may succeed later`,
      };
    }
    return {
      kind: 'error',
      errno,
      // A reason is a code to match on: "errno 4000" would be the one with a space in it.
      reason: name.toLowerCase().replace(' ', '-'),
      message: `Xen answered XENPF_pmem_add ${described} with ${name}`,
    };
  }
}
