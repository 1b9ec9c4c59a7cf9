// The platform op XENPF_pmem_add of the public pmem RFC for Xen (2016, v1), as one hypervisor
// interface: how it is proven present, how a report is encoded and sent, the RFC hypervisor's own
// rules, how each answer is read, and what it is called. docs/hypercall.md is the prose of this
// module; src/xen/platform-op.ts is the struct.

import { constants } from 'node:os';

import { errnoName } from '../../core/errno.js';
import { halfOpenRange, hex, rangesOverlap } from '../../core/units.js';
import { xenMinimumReservedPages } from '../../core/xen-sizing.js';
import type { BridgeAnswer, HypervisorInterface, PfnRange, PmemReport, Presence } from '../interface.js';
import { describePmemAdd, encodePmemAdd, pmemAddProbe } from '../platform-op.js';
import type { HypercallPort, HypercallResult } from '../ports.js';

const { EINVAL, ENOSYS, ENODEV, EAGAIN, EBUSY, ENOMEM, EPERM, EACCES } = constants.errno;

const TITLE = 'XENPF_pmem_add';

/** Upstream Xen gave platform op 64 to XENPF_get_dom0_console in 4.18.0 (released 2023-11-16). */
const DOM0_CONSOLE_NOTE = 'upstream Xen 4.18 and later define platform op 64 as XENPF_get_dom0_console';

/** Memory hot-add granularity the RFC enforced on the region bounds: 2 MiB in 4 KiB pages. */
export const RFC_REGION_ALIGN_PAGES = 512n;

export type XenRuleReason =
  | 'empty-range'
  | 'outside-region'
  | 'reserved-data-overlap'
  | 'reserved-too-small'
  | 'overlaps-added-region'
  | 'region-not-2mib-aligned';

export type XenCheck =
  | { ok: true }
  | { ok: false; rule: number; reason: XenRuleReason; message: string };

/**
 * The RFC hypervisor's checks on XENPF_pmem_add, rules 1–6 of docs/hypercall.md, in that order;
 * the first broken rule is reported. `alreadyAdded` is what this side knows Xen already holds.
 * The test hypervisor applies the same rules in C, so both must change together.
 */
export function checkPmemAddLikeXen(req: PmemReport, alreadyAdded: readonly PfnRange[]): XenCheck {
  const fail = (rule: number, reason: XenRuleReason, message: string): XenCheck => ({ ok: false, rule, reason, message });
  const range = halfOpenRange;

  const ranges: [string, bigint, bigint][] = [
    ['region', req.spfn, req.epfn],
    ['reserved range', req.rsvSpfn, req.rsvEpfn],
    ['data range', req.dataSpfn, req.dataEpfn],
  ];
  for (const [name, start, end] of ranges) {
    if (!(start < end)) {
      return fail(1, 'empty-range', `the ${name} ${range(start, end)} is empty: its start PFN must be below its end PFN`);
    }
  }

  for (const [name, start, end] of ranges.slice(1)) {
    if (start < req.spfn || end > req.epfn) {
      return fail(2, 'outside-region', `the ${name} ${range(start, end)} is not inside the region ${range(req.spfn, req.epfn)}`);
    }
  }

  if (rangesOverlap(req.rsvSpfn, req.rsvEpfn, req.dataSpfn, req.dataEpfn)) {
    return fail(3, 'reserved-data-overlap',
      `the reserved range ${range(req.rsvSpfn, req.rsvEpfn)} overlaps the data range ${range(req.dataSpfn, req.dataEpfn)}`);
  }

  const totalPages = req.epfn - req.spfn;
  const neededPages = xenMinimumReservedPages(totalPages);
  const reservedPages = req.rsvEpfn - req.rsvSpfn;
  if (reservedPages < neededPages) {
    return fail(4, 'reserved-too-small',
      `the reserved range has ${hex(reservedPages)} pages but a region of ${hex(totalPages)} pages needs at least ${hex(neededPages)} (32 bytes of page_info and 8 bytes of M2P per page)`);
  }

  const clash = alreadyAdded.find((added) => rangesOverlap(req.spfn, req.epfn, added.spfn, added.epfn));
  if (clash) {
    return fail(5, 'overlaps-added-region',
      `the region ${range(req.spfn, req.epfn)} overlaps ${range(clash.spfn, clash.epfn)}, which was already added (Xen has no remove operation)`);
  }

  if (req.spfn % RFC_REGION_ALIGN_PAGES !== 0n || req.epfn % RFC_REGION_ALIGN_PAGES !== 0n) {
    return fail(6, 'region-not-2mib-aligned',
      `the region ${range(req.spfn, req.epfn)} must start and end on a 2 MiB boundary (a multiple of ${hex(RFC_REGION_ALIGN_PAGES)} pages)`);
  }

  return { ok: true };
}

function firstChangedByte(before: Buffer, after: Buffer): number | null {
  if (after.length !== before.length) return Math.min(before.length, after.length);
  for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) return i;
  return null;
}

/**
 * The answer to the probe (pmemAddProbe), in the order of docs/hypercall.md: only an untouched
 * -1/EINVAL proves pmem_add; ENOSYS is a hypervisor without it; a write, a success or ENODEV is
 * platform op 64 being another operation; a denial or any other errno leaves it unproven.
 */
async function probe(port: HypercallPort, xenVersion: string): Promise<Presence> {
  const bytes = pmemAddProbe();
  const answer = await port.platformOp(bytes);
  const changedAt = firstChangedByte(bytes, answer.after);
  const other = (what: string): Presence => ({
    present: false,
    reason: 'cmd-64-is-another-operation',
    message: `Xen ${xenVersion} answered an invalid pmem_add (platform op 64) with ${what}, which the pmem hypervisor never does: here op 64 is another operation (${DOM0_CONSOLE_NOTE}), so nothing will be reported`,
  });

  if (changedAt !== null) return other(`a write into the request at byte ${changedAt} (rc ${answer.rc})`);
  if (answer.rc >= 0) return other(`success (rc ${answer.rc})`);
  if (answer.errno === EINVAL) return { present: true };
  if (answer.errno === ENOSYS) {
    return {
      present: false,
      reason: 'enosys',
      message: `Xen ${xenVersion} does not implement ${TITLE} (platform op 64): it answered ENOSYS, as every upstream Xen does because the pmem patches were never merged; boot a hypervisor built with them`,
    };
  }
  // XENPF_get_dom0_console's answer on a host without a VGA or framebuffer console.
  if (answer.errno === ENODEV) return other('ENODEV');
  const denied = answer.errno === EPERM || answer.errno === EACCES;
  return {
    present: false,
    reason: 'probe-failed',
    message: denied
      ? `Xen ${xenVersion} refused platform op 64 with ${errnoName(answer.errno)}: this domain is not allowed to make platform ops (not the hardware domain, or an XSM policy denies it)`
      : `Xen ${xenVersion} answered the pmem_add probe with ${errnoName(answer.errno)} instead of EINVAL, so pmem_add support is unproven`,
  };
}

/** The errno mapping of docs/hypercall.md: success, EINVAL explained by the rules, busy, anything else. */
function readAnswer(req: PmemReport, result: HypercallResult, alreadyAdded: readonly PfnRange[]): BridgeAnswer {
  if (result.rc >= 0) return { kind: 'reported' };
  const { errno } = result;
  const described = describePmemAdd(req);
  const name = errnoName(errno);
  if (errno === EINVAL) {
    const view = checkPmemAddLikeXen(req, alreadyAdded);
    if (!view.ok) {
      return {
        kind: 'rejected',
        errno,
        reason: view.reason,
        message: `Xen refused ${TITLE} ${described} with EINVAL; in the hypervisor's view rule ${view.rule} fails: ${view.message}`,
      };
    }
    return {
      kind: 'rejected',
      errno,
      reason: 'overlaps-earlier-add',
      message: `Xen refused ${TITLE} ${described} with EINVAL although rules 1-6 hold for what this daemon knows: the region ${halfOpenRange(req.spfn, req.epfn)} overlaps one already added, possibly by an earlier run, or memory Xen already knows (Xen has no remove operation)`,
    };
  }
  if (errno === EAGAIN || errno === EBUSY || errno === ENOMEM) {
    return {
      kind: 'retry',
      errno,
      reason: name.toLowerCase(),
      message: errno === ENOMEM
        // The patched hypervisor answers ENOMEM for two things it does not tell apart by errno:
        // its own heap running short (passing) and a reserved area whose whole 2 MiB chunks cannot
        // hold its tables for this placement (lasting; its console says reserved-exhausted).
        ? `Xen answered ${TITLE} ${described} with ENOMEM; nothing was added. Either Xen's own memory is short, which passes, or its tables for this region need more whole 2 MiB chunks than the reserved area holds (Xen's console then says reserved-exhausted): such a layout was made by an older planner and needs xen-pmem setup again while the device is not in use`
        : `Xen answered ${TITLE} ${described} with ${name}; nothing was added and the same request may succeed later`,
    };
  }
  return {
    kind: 'error',
    errno,
    // A reason is a code to match on: "errno 4000" would be the one with a space in it.
    reason: name.toLowerCase().replace(' ', '-'),
    message: `Xen answered ${TITLE} ${described} with ${name}`,
  };
}

export const pmemAdd: HypervisorInterface = {
  name: 'pmem-add',
  title: TITLE,
  probe,
  encode: (report) => encodePmemAdd(report),
  send: (port, bytes) => port.platformOp(bytes),
  check: checkPmemAddLikeXen,
  readAnswer,
  describe: describePmemAdd,
};
