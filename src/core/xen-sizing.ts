// How much of a pmem region Xen needs for its own management structures. Two answers on purpose:
// the hypervisor's acceptance check (what XENPF_pmem_add enforces) and the planner's size (what Xen
// actually consumes, with margin). See docs/superblock.md, "Sizing the reserved area".

import { alignUp, HUGE_PAGE_BYTES, PAGE_BYTES } from './units.js';

export interface PerPageCosts {
  pageSize: number;
  /** sizeof(struct page_info) on x86-64. */
  pageInfoBytes: number;
  /** One machine-to-phys entry (unsigned long). */
  m2pBytes: number;
  /** One entry of the compat (32-bit guest) M2P table. */
  compatM2pBytes: number;
}

/** The costs the planner sizes with and records in every super block it writes. */
export const XEN_X86_64_COSTS: PerPageCosts = {
  pageSize: 4096,
  pageInfoBytes: 32,
  m2pBytes: 8,
  compatM2pBytes: 4,
};

/**
 * The RFC hypervisor's rule 4, bit for bit: (32 * pages) >> 12 pages of page_info plus
 * (8 * pages) >> 12 pages of M2P. A reserved area below this is refused with -EINVAL.
 */
export function xenMinimumReservedPages(totalPages: bigint): bigint {
  return ((32n * totalPages) >> 12n) + ((8n * totalPages) >> 12n);
}

/**
 * What the planner reserves: every per-page cost Xen pays from the area (the compat M2P too, which
 * rule 4 forgets), rounded up to the 2 MiB chunks the hypervisor hands out. Always at least
 * xenMinimumReservedPages, so a planned layout passes the hypervisor's check with room to spare.
 */
export function plannedReservedBytes(totalPages: bigint, costs: PerPageCosts = XEN_X86_64_COSTS): bigint {
  const perPage = BigInt(costs.pageInfoBytes + costs.m2pBytes + costs.compatM2pBytes);
  const planned = alignUp(totalPages * perPage, HUGE_PAGE_BYTES);
  const minimum = alignUp(xenMinimumReservedPages(totalPages) * PAGE_BYTES, HUGE_PAGE_BYTES);
  return planned > minimum ? planned : minimum;
}
