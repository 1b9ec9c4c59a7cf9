// The table of XENPF_pmem_add requests the xen-abi scenario sends, first to the patched
// hypervisor through Debian's libxencall and then to the test hypervisor (the stand-in), so that
// their answers can be compared row by row. Pure: built from the two NVDIMM regions' PFNs, shared
// by the guest program that sends the rows and the host test that judges them.

import { planLayout } from '../../src/core/planner.js';
import { PAGE_BYTES } from '../../src/core/units.js';
import { xenMinimumReservedPages } from '../../src/core/xen-sizing.js';
import type { PfnRange } from '../../src/xen/interface.js';
import type { PmemAddRequest } from '../../src/xen/platform-op.js';

export interface AbiRow {
  name: string;
  /** What the row tries, for test names and the serial log. */
  what: string;
  /** null for the capability probe, which is sent as `pmemAddProbe()`'s bytes. */
  request: PmemAddRequest | null;
}

/** 2 MiB in pages: where the planner puts the reserved area (RESERVED_OFFSET_BYTES). */
const RESERVED_OFFSET_PAGES = 0x200n;

/** The request `xen-pmem setup` would lead to for a region: the planner's own layout. */
export function plannerRequest(region: PfnRange): PmemAddRequest {
  const planned = planLayout((region.epfn - region.spfn) * PAGE_BYTES, []);
  if (!planned.ok) throw new Error(`the planner refuses a region of ${region.epfn - region.spfn} pages: ${planned.message}`);
  const { plan } = planned;
  const at = (bytes: bigint): bigint => region.spfn + bytes / PAGE_BYTES;
  return {
    spfn: region.spfn,
    epfn: region.epfn,
    rsvSpfn: at(plan.reservedOffset),
    rsvEpfn: at(plan.reservedOffset + plan.reservedSize),
    dataSpfn: at(plan.dataOffset),
    dataEpfn: at(plan.dataOffset + plan.dataSize),
  };
}

/** The planner's layout with the reserved area cut to exactly rule 4's minimum. */
export function minimumRequest(region: PfnRange): PmemAddRequest {
  const planned = plannerRequest(region);
  const rsvSpfn = region.spfn + RESERVED_OFFSET_PAGES;
  return { ...planned, rsvSpfn, rsvEpfn: rsvSpfn + xenMinimumReservedPages(region.epfn - region.spfn) };
}

/**
 * The rows, in the order they are sent. `nv0` and `nv1` are the regions of two blank NVDIMMs
 * (nv0 256 MiB, nv1 512 MiB); `ram` is a range of the Dom0's RAM Xen manages.
 */
export function abiRows(nv0: PfnRange, nv1: PfnRange, ram: PfnRange): AbiRow[] {
  const valid0 = plannerRequest(nv0);
  const row = (name: string, what: string, request: PmemAddRequest | null): AbiRow => ({ name, what, request });
  const shifted = { spfn: nv0.spfn + 0x8000n, epfn: nv0.epfn + 0x8000n };
  const far = { spfn: 1n << 40n, epfn: (1n << 40n) + (nv0.epfn - nv0.spfn) };
  return [
    row('probe', 'the capability probe: six zero PFNs and a canary in the rest of the union', null),
    row('rule-1', 'nv0 with an empty data range', { ...valid0, dataEpfn: valid0.dataSpfn }),
    row('rule-2', 'nv0 with the reserved range starting 2 MiB before the region', { ...valid0, rsvSpfn: nv0.spfn - 0x200n }),
    row('rule-3', 'nv0 with the data range starting on the last reserved page', { ...valid0, dataSpfn: valid0.rsvEpfn - 1n }),
    row('rule-4', 'nv0 with one page less than the rule-4 minimum', { ...minimumRequest(nv0), rsvEpfn: minimumRequest(nv0).rsvEpfn - 1n }),
    row('rule-6', 'nv0 with the region starting 4 KiB into the NVDIMM', { ...valid0, spfn: nv0.spfn + 1n }),
    row('rule-4-minimum-nv0', 'nv0 with a reserved range of exactly the rule-4 minimum', minimumRequest(nv0)),
    row('beyond-frame-table', 'a region at 4 PiB, far beyond any frame table', plannerRequest(far)),
    row('overlaps-known-memory', 'a region over the Dom0\'s RAM', plannerRequest(ram)),
    row('add-nv0', 'nv0 with the planner\'s layout', valid0),
    row('rule-5-re-add', 'nv0 again, the same request', valid0),
    row('rule-5-overlap', 'a 256 MiB region 128 MiB into nv0', plannerRequest(shifted)),
    row('rule-4-minimum-nv1', 'nv1 with a reserved range of exactly the rule-4 minimum', minimumRequest(nv1)),
    row('add-nv1', 'nv1 with the planner\'s layout', plannerRequest(nv1)),
  ];
}
