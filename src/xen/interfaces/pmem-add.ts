// RETIRED. The RFC hypervisor's rules for XENPF_pmem_add (platform op 64), which no hypervisor
// implements any more: the product reports through XENPF_pmem, op 67, and judges a layout by
// checkPmemAddLikeXen in src/xen/interfaces/xenpf-pmem.ts. This module stays only because the
// lab's scenarios (test/lab) still import it until they move to op 67; test/architecture.test.ts
// keeps every other module from importing it. Delete it with their last import.

import { halfOpenRange, hex, rangesOverlap } from '../../core/units.js';
import { xenMinimumReservedPages } from '../../core/xen-sizing.js';
import type { PfnRange, PmemReport } from '../interface.js';

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
