// How much of a pmem region Xen needs for its own management structures. Two answers on purpose:
// the hypervisor's acceptance check (what XENPF_pmem's add enforces, rule 4) and the planner's size (what Xen
// can consume at most, wherever the region lies). See docs/superblock.md, "Sizing the reserved area".

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
 * XENPF_pmem's rule 4, bit for bit: (32 * pages) >> 12 pages of page_info plus (8 * pages) >> 12
 * pages of M2P. A reserved area below this is refused with -ENOSPC reserved_too_small.
 */
export function xenMinimumReservedPages(totalPages: bigint): bigint {
  return ((32n * totalPages) >> 12n) + ((8n * totalPages) >> 12n);
}

/**
 * What the planner reserves: room for Xen's tables however the region lies in physical memory.
 * Xen builds each table (page_info, M2P, and the compat M2P a Xen with 32-bit PV guests keeps) from
 * whole 2 MiB chunks of the reserved area, one chunk for every 2 MiB of table that covers any frame
 * of the region: a 256 MiB pdx group of page_info, a 1 GiB slot of M2P, a 2 GiB slot of compat M2P.
 * A region of N pages touches at most ⌈N / frames-per-chunk⌉ + 1 of them when it does not start on
 * their boundary, which the planner cannot know (the device may be set up as an image file, or
 * move). Measured on the patched hypervisor (docs/hypervisor.md): the per-page sum alone, rounded
 * to 2 MiB, was too small for a region straddling a boundary and for any Xen with 32-bit PV guests.
 * Always at least xenMinimumReservedPages.
 */
export function plannedReservedBytes(totalPages: bigint, costs: PerPageCosts = XEN_X86_64_COSTS): bigint {
  let chunks = 0n;
  for (const entryBytes of [costs.pageInfoBytes, costs.m2pBytes, costs.compatM2pBytes]) {
    if (entryBytes <= 0) continue;
    const framesPerChunk = HUGE_PAGE_BYTES / BigInt(entryBytes);
    chunks += (totalPages + framesPerChunk - 1n) / framesPerChunk + 1n;
  }
  const planned = chunks * HUGE_PAGE_BYTES;
  const minimum = alignUp(xenMinimumReservedPages(totalPages) * PAGE_BYTES, HUGE_PAGE_BYTES);
  return planned > minimum ? planned : minimum;
}
