// XENPF_pmem, platform op 67, as one hypervisor interface: how it is proven present, the
// hypervisor's own rules 1-6, how an add is sent and each answer read (by the reason Xen writes
// back, never guessed), and the queries of what Xen holds. docs/hypercall.md is the prose of this
// module; src/xen/xenpf-pmem.ts is the struct.

import { constants } from 'node:os';

import { errnoName } from '../../core/errno.js';
import { halfOpenRange, hex, rangesOverlap } from '../../core/units.js';
import { xenMinimumReservedPages } from '../../core/xen-sizing.js';
import type { AssignAnswer, BridgeAnswer, GuestFrames, HeldRegion, HypervisorInterface, OwnerRun, PfnRange, PmemReport, Presence, Query, RuleCheck } from '../interface.js';
import type { HypercallPort, HypercallResult } from '../ports.js';
import {
  decodeAssignDone, decodeHeader, decodeOwner, decodeRegion, describeLayout, DOMID_INVALID, encodeAdd, encodeAssign, encodeOwner, encodeRegion,
  PLATFORM_OP_BYTES, PROBE_INDEX, reasonCodeOf, reasonNumberOf, XENPF_PMEM, XENPF_PMEM_ABI, type XenpfPmemReason,
} from '../xenpf-pmem.js';

const { EINVAL, ENOSPC, EEXIST, ENOSYS, ENOENT, EBUSY, ENOMEM, EPERM, EACCES, EOPNOTSUPP } = constants.errno;

const TITLE = 'XENPF_pmem';

/** Xen's hot-add granularity on the region's bounds: 2 MiB in 4 KiB pages. */
export const REGION_ALIGN_PAGES = 512n;

/** The reason codes of rules 1-6 (rule 5 has two: a different region, or exactly this one). */
export type XenRuleReason = Extract<XenpfPmemReason,
  'empty-range' | 'outside-region' | 'reserved-data-overlap' | 'reserved-too-small' | 'overlaps-added-region' | 'already-added' | 'region-not-2mib-aligned'>;

export type XenCheck = RuleCheck & ({ ok: true } | { ok: false; reason: XenRuleReason });

/**
 * Xen's checks on an add, rules 1-6 of docs/hypercall.md, in that order; the first broken rule is
 * reported with the errno and reason Xen answers it with. `alreadyAdded` is what this side knows
 * Xen already holds. The test hypervisor applies the same rules in C, so both change together.
 */
export function checkPmemAddLikeXen(req: PmemReport, alreadyAdded: readonly PmemReport[]): XenCheck {
  const fail = (rule: number, reason: XenRuleReason, message: string, errno = EINVAL): XenCheck =>
    ({ ok: false, rule, reason, errno, xenReason: reasonNumberOf(reason), message });
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
      `the reserved range has ${hex(reservedPages)} pages but a region of ${hex(totalPages)} pages needs at least ${hex(neededPages)} (32 bytes of page_info and 8 bytes of M2P per page)`, ENOSPC);
  }

  for (const added of alreadyAdded) {
    if (sameLayout(req, added)) {
      return fail(5, 'already-added', `the region ${range(req.spfn, req.epfn)} was already added with exactly these ranges`, EEXIST);
    }
    if (rangesOverlap(req.spfn, req.epfn, added.spfn, added.epfn)) {
      return fail(5, 'overlaps-added-region',
        `the region ${range(req.spfn, req.epfn)} overlaps ${range(added.spfn, added.epfn)}, which was already added (Xen has no remove operation)`);
    }
  }

  if (req.spfn % REGION_ALIGN_PAGES !== 0n || req.epfn % REGION_ALIGN_PAGES !== 0n) {
    return fail(6, 'region-not-2mib-aligned',
      `the region ${range(req.spfn, req.epfn)} must start and end on a 2 MiB boundary (a multiple of ${hex(REGION_ALIGN_PAGES)} pages)`);
  }

  return { ok: true };
}

export function sameLayout(a: PmemReport, b: PmemReport): boolean {
  return a.spfn === b.spfn && a.epfn === b.epfn && a.rsvSpfn === b.rsvSpfn && a.rsvEpfn === b.rsvEpfn
    && a.dataSpfn === b.dataSpfn && a.dataEpfn === b.dataEpfn;
}

/** What each refusal of an add means, for the sentence after Xen's reason. */
const MEANING: Partial<Record<XenpfPmemReason, string>> = {
  'empty-range': 'one of the three ranges is empty',
  'outside-region': 'the reserved or the data range is not inside the region',
  'reserved-data-overlap': 'the reserved and the data range overlap',
  'reserved-too-small': 'the reserved range is below rule 4\'s floor of N/128 + N/512 pages; set the device up again with xen-pmem setup while it is not in use',
  'overlaps-added-region': 'the region overlaps a different region Xen already holds; Xen has no remove operation, so a new layout there needs a reboot',
  'region-not-2mib-aligned': 'the region does not start and end on a 2 MiB boundary',
  'beyond-frame-table': 'the region lies beyond what Xen\'s frame table or physical address width can describe',
  'pdx-hole': 'the region crosses the hole of Xen\'s pdx compression',
  'not-pmem': 'the frames lie in no NFIT pmem range and no SRAT hot-pluggable range',
  'firmware-memory': 'the firmware\'s E820 map gives these frames to RAM, reserved, ACPI, NVS or unusable memory',
  'read-only-mmio': 'the frames are read-only MMIO',
  'known-memory': 'Xen already manages these frames as memory',
  'not-permitted': 'this domain may not access every frame of the region',
  'other-domain-access': 'another domain may access the region',
  'mapped': 'a domain still maps a frame of the region (the Dom0 must unbind the namespace\'s driver first)',
  'reserved-exhausted': 'Xen\'s tables for the region where it lies need more whole 2 MiB chunks than the reserved range holds; set the device up again with xen-pmem setup while it is not in use',
  'no-memory': 'Xen\'s own memory ran short; nothing was added',
  'busy': 'another add is under way in Xen',
  'unsupported-caller': 'Xen takes pmem only from a PV hardware domain',
  'not-data': 'the frames are not all inside one data range Xen holds',
  'held': 'a domain holds some of these frames already; a guest gives them back when it is destroyed',
  'no-such-domain': 'there is no such domain',
  'unsupported-domain': 'only HVM and PVH guests (not the Dom0, not PV guests, not a dying domain) can take pmem',
  'over-allocation': 'the domain cannot take that many more pages',
  'gfn-in-use': 'the guest already has memory or a mapping at those guest frames; pick an address above its RAM',
};

/** `EINVAL not_pmem`: the errno and the reason in the header's spelling. */
function answerName(errno: number, code: string): string {
  return `${errnoName(errno)} ${code.replace(/-/g, '_').replace('region_not_2mib_aligned', 'region_not_aligned')}`;
}

function answered(result: HypercallResult): { abi: number; reason: number } | null {
  if (result.after.length !== PLATFORM_OP_BYTES) return null;
  const { abi, reason } = decodeHeader(result.after);
  return { abi, reason };
}

/**
 * The probe: the region at index 0xffffffff. Only XENPF_pmem answers exactly -ENOENT with abi 1
 * and reason 21 (no_such_region); ENOSYS is a hypervisor without it (upstream 4.17 and 4.20); a
 * denial or an odd errno leaves it unproven; anything else is another operation under number 67.
 */
async function probe(port: HypercallPort, xenVersion: string): Promise<Presence> {
  const result = await port.platformOp(encodeRegion(PROBE_INDEX));
  const mark = answered(result);
  const proof = `-ENOENT with abi ${XENPF_PMEM_ABI} and reason ${reasonNumberOf('no-such-region')} (no_such_region)`;
  if (result.rc < 0 && result.errno === ENOENT && mark?.abi === XENPF_PMEM_ABI && mark.reason === reasonNumberOf('no-such-region')) {
    return { present: true };
  }
  if (result.rc < 0 && result.errno === ENOSYS) {
    return {
      present: false,
      reason: 'enosys',
      message: `Xen ${xenVersion} does not implement ${TITLE} (platform op ${XENPF_PMEM}): it answered ENOSYS, as upstream Xen does (4.17 and 4.20 included); boot a hypervisor built with the pmem series`,
    };
  }
  const what = result.rc >= 0 ? `success (rc ${result.rc})` : `${errnoName(result.errno)}${mark ? ` with abi ${mark.abi} and reason ${mark.reason}` : ''}`;
  if (result.rc >= 0 || result.errno === ENOENT) {
    return {
      present: false,
      reason: 'op-67-is-another-operation',
      message: `Xen ${xenVersion} answered the ${TITLE} probe (region 0x${PROBE_INDEX.toString(16)}) with ${what} instead of ${proof}: here platform op ${XENPF_PMEM} is another operation, so nothing will be reported`,
    };
  }
  const denied = result.errno === EPERM || result.errno === EACCES;
  return {
    present: false,
    reason: 'probe-failed',
    message: denied
      ? `Xen ${xenVersion} refused platform op ${XENPF_PMEM} with ${errnoName(result.errno)}: this domain is not allowed to make platform ops (not the hardware domain, or an XSM policy denies it)`
      : `Xen ${xenVersion} answered the ${TITLE} probe with ${what} instead of ${proof}, so ${TITLE} is unproven`,
  };
}

/** Sends one add and reads Xen's answer by its errno and the reason it wrote (docs/hypercall.md). */
async function add(port: HypercallPort, report: PmemReport): Promise<BridgeAnswer> {
  const result = await port.platformOp(encodeAdd(report));
  const described = `${TITLE} add ${describeLayout(report)}`;
  const mark = answered(result);
  if (result.rc < 0 && (!mark || mark.abi === 0)) {
    // Refused before XENPF_pmem looked at it (privilege, XSM, interface version): no abi written.
    return {
      kind: 'error',
      errno: result.errno,
      reason: errnoName(result.errno).toLowerCase().replace(' ', '-'),
      message: `Xen answered ${described} with ${errnoName(result.errno)} before ${TITLE} answered (no abi written): the platform op was refused as a whole`,
    };
  }
  if (!mark || mark.abi !== XENPF_PMEM_ABI) {
    const errno = result.rc < 0 ? result.errno : 0;
    const said = result.rc < 0 ? errnoName(result.errno) : `success (rc ${result.rc})`;
    return {
      kind: 'error',
      errno,
      reason: 'abi-mismatch',
      message: `Xen answered ${described} with ${said} but ${mark ? `abi ${mark.abi}` : 'no answer in the buffer'} instead of abi ${XENPF_PMEM_ABI}, so the answer cannot be read`,
    };
  }
  if (result.rc >= 0) return { kind: 'reported', already: false };
  const { errno } = result;
  const code = reasonCodeOf(mark.reason);
  const name = answerName(errno, code);
  const meaning = MEANING[code as XenpfPmemReason];
  const sentence = `Xen answered ${described} with ${name}${meaning ? `: ${meaning}` : ''}`;
  switch (errno) {
    case EEXIST:
      if (code === 'already-added') return { kind: 'reported', already: true };
      break;
    case EINVAL:
    case ENOSPC:
    case EPERM:
      return { kind: 'rejected', errno, reason: code, message: sentence };
    case EBUSY:
    case ENOMEM:
      return { kind: 'retry', errno, reason: code, message: `${sentence}; the same request may succeed later` };
    case EOPNOTSUPP:
      if (code === 'unsupported-caller') return { kind: 'unsupported', reason: code, message: sentence };
      break;
  }
  return { kind: 'error', errno, reason: code === 'none' ? errnoName(errno).toLowerCase().replace(' ', '-') : code, message: sentence };
}

/** More regions than any host has: a hypervisor that claims more is not read further. */
const MAX_REGIONS = 65536;

async function regions(port: HypercallPort): Promise<Query<HeldRegion[]>> {
  const held: HeldRegion[] = [];
  for (let index = 0; index < MAX_REGIONS; index++) {
    const result = await port.platformOp(encodeRegion(index));
    const mark = answered(result);
    if (result.rc < 0 && result.errno === ENOENT && mark?.reason === reasonNumberOf('no-such-region')) {
      return { kind: 'answered', value: held };
    }
    if (result.rc < 0 || mark?.abi !== XENPF_PMEM_ABI) {
      return {
        kind: 'unavailable',
        reason: 'query-failed',
        message: `Xen answered ${TITLE} region ${index} with ${result.rc < 0 ? errnoName(result.errno) : `rc ${result.rc}`}${mark ? ` (abi ${mark.abi}, reason ${reasonCodeOf(mark.reason)})` : ''}, so what it holds is unknown`,
      };
    }
    const region = decodeRegion(result.after);
    const { nrRegions: _nr, index: _index, ...kept } = region;
    held.push(kept);
    if (index + 1 >= region.nrRegions) return { kind: 'answered', value: held };
  }
  return { kind: 'unavailable', reason: 'query-failed', message: `Xen claims more than ${MAX_REGIONS} pmem regions, so what it holds is not read` };
}

/** Runs of frames one domain holds from range.spfn on, until DOMID_INVALID or range.epfn. */
async function owners(port: HypercallPort, range: PfnRange): Promise<Query<OwnerRun[]>> {
  const runs: OwnerRun[] = [];
  let pfn = range.spfn;
  while (pfn < range.epfn) {
    const result = await port.platformOp(encodeOwner(pfn));
    const mark = answered(result);
    if (result.rc < 0 || mark?.abi !== XENPF_PMEM_ABI) {
      return {
        kind: 'unavailable',
        reason: 'query-failed',
        message: `Xen answered ${TITLE} owner ${hex(pfn)} with ${result.rc < 0 ? errnoName(result.errno) : `rc ${result.rc}`}${mark ? ` (reason ${reasonCodeOf(mark.reason)})` : ''}, so who holds the frames of ${halfOpenRange(range.spfn, range.epfn)} is unknown`,
      };
    }
    const run = decodeOwner(result.after);
    if (run.domid === DOMID_INVALID || run.spfn >= range.epfn) break;
    if (run.epfn <= pfn || run.epfn <= run.spfn) {
      return { kind: 'unavailable', reason: 'query-failed', message: `Xen answered ${TITLE} owner ${hex(pfn)} with the run ${halfOpenRange(run.spfn, run.epfn)}, which does not move past it` };
    }
    const spfn = run.spfn < pfn ? pfn : run.spfn;
    const epfn = run.epfn > range.epfn ? range.epfn : run.epfn;
    // Xen cuts a run after 2^20 frames; one holder's frames that touch are one run here.
    const last = runs.at(-1);
    if (last && last.epfn === spfn && last.domid === run.domid) last.epfn = epfn;
    else runs.push({ spfn, epfn, domid: run.domid });
    pfn = run.epfn;
  }
  return { kind: 'answered', value: runs };
}

/**
 * XENPF_PMEM_assign. Xen gives the frames in 2 MiB runs under its own continuations, so one call
 * does the whole request. A refusal part-way leaves the runs given before it with the guest (Xen
 * writes back how many): the sentence says so, and destroying the guest returns them.
 */
async function assign(port: HypercallPort, frames: GuestFrames): Promise<AssignAnswer> {
  const result = await port.platformOp(encodeAssign(frames));
  const mark = answered(result);
  const described = `${TITLE} assign of ${frames.nr} frames from ${hex(frames.mfn)} at GFN ${hex(frames.gfn)} to domain ${frames.domid}`;
  if (mark?.abi !== XENPF_PMEM_ABI) {
    const said = result.rc < 0 ? errnoName(result.errno) : `rc ${result.rc}`;
    return { kind: 'refused', errno: result.rc < 0 ? result.errno : 0, reason: 'abi-mismatch', message: `Xen answered ${described} with ${said} and no XENPF_pmem answer (abi ${mark?.abi ?? 'none'}), so what it gave is unknown` };
  }
  const done = decodeAssignDone(result.after);
  if (result.rc >= 0 && done === frames.nr) return { kind: 'assigned' };
  if (result.rc >= 0) return { kind: 'refused', errno: 0, reason: 'short-assign', message: `Xen answered ${described} with success but ${done} frames given` };
  const code = reasonCodeOf(mark.reason);
  const meaning = MEANING[code as XenpfPmemReason];
  const given = done > 0n ? `; the first ${done} frames were given before the refusal and stay the domain's until it is destroyed` : '';
  return { kind: 'refused', errno: result.errno, reason: code, message: `Xen answered ${described} with ${answerName(result.errno, code)}${meaning ? `: ${meaning}` : ''}${given}` };
}

export const xenpfPmem: HypervisorInterface = {
  name: 'xenpf-pmem',
  title: TITLE,
  probe,
  check: checkPmemAddLikeXen,
  add,
  regions,
  owners,
  assign,
  describe: (report) => `${TITLE} add ${describeLayout(report)}`,
};
