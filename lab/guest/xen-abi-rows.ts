// The table of XENPF_pmem requests the xen-abi scenario sends, first to the patched hypervisor
// through Debian's libxencall and then to the test hypervisor (the stand-in), so that their
// answers can be compared row by row, and what each should answer. Pure: built from the NVDIMM
// regions' PFNs, shared by the guest program that sends the rows and the host test that judges
// them.

import { planLayout } from '../../src/core/planner.js';
import { PAGE_BYTES } from '../../src/core/units.js';
import { xenMinimumReservedPages } from '../../src/core/xen-sizing.js';
import type { PfnRange, PmemReport } from '../../src/xen/interface.js';
import type { XenpfPmemReason } from '../../src/xen/xenpf-pmem.js';

export type AbiRequest =
  | { kind: 'add'; report: PmemReport }
  | { kind: 'probe' }
  | { kind: 'sub-op'; sub: number }
  | { kind: 'region'; index: number }
  | { kind: 'owner'; pfn: bigint }
  /** XENPF_mem_hotadd (platform op 59) over a range: memory hot-add must keep off pmem. */
  | { kind: 'mem-hotadd'; range: PfnRange };

/** What a row should get: 0, or the errno's name and the reason code Xen writes back. */
export interface Expected {
  errno: 'OK' | 'EINVAL' | 'ENOSPC' | 'EEXIST' | 'EBUSY' | 'ENOENT' | 'EOPNOTSUPP' | 'ENOSYS';
  reason: XenpfPmemReason | null;
}

export interface AbiRow {
  name: string;
  /** What the row tries, for test names and the serial log. */
  what: string;
  request: AbiRequest;
  /** The NVDIMM whose driver the Dom0 unbinds right before the row (so that Xen may take it). */
  unbindFirst?: 'nv0' | 'nv1';
  real: Expected;
  /**
   * The stand-in's answer where it differs from Xen's, and why: it sees neither Xen's tables,
   * nor the firmware, nor who maps what.
   */
  standIn?: Expected & { why: string };
}

/** 2 MiB in pages: where the planner puts the reserved area (RESERVED_OFFSET_BYTES). */
const RESERVED_OFFSET_PAGES = 0x200n;

/** The report `xen-pmem setup` would lead to for a region: the planner's own layout. */
export function plannerReport(region: PfnRange): PmemReport {
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
export function minimumReport(region: PfnRange): PmemReport {
  const planned = plannerReport(region);
  const rsvSpfn = region.spfn + RESERVED_OFFSET_PAGES;
  return { ...planned, rsvSpfn, rsvEpfn: rsvSpfn + xenMinimumReservedPages(region.epfn - region.spfn) };
}

const ok: Expected = { errno: 'OK', reason: null };
const refused = (errno: Expected['errno'], reason: XenpfPmemReason): Expected => ({ errno, reason });
const standInAccepts = (why: string): Expected & { why: string } => ({ ...ok, why });

/**
 * The rows, in the order they are sent. `nv0` (256 MiB) and `nv1` (512 MiB) are two NVDIMMs the
 * Dom0's pmem driver has bound at boot; `ram` is a range of the Dom0's RAM; `pciWindow` a range of
 * the PCI MMIO window below 4 GiB; `hotplugHole` a range of the firmware's hot-pluggable area
 * where no NVDIMM is.
 */
export function abiRows(nv0: PfnRange, nv1: PfnRange, ram: PfnRange, pciWindow: PfnRange, hotplugHole: PfnRange): AbiRow[] {
  const valid0 = plannerReport(nv0);
  const add = (report: PmemReport): AbiRequest => ({ kind: 'add', report });
  const shifted = { spfn: nv0.spfn + 0x8000n, epfn: nv0.epfn + 0x8000n };
  const far = { spfn: 1n << 40n, epfn: (1n << 40n) + (nv0.epfn - nv0.spfn) };
  const notPmem = standInAccepts('the stand-in has no firmware tables to check a range against');
  return [
    { name: 'probe', what: 'the capability probe: the region query for index 0xffffffff', request: { kind: 'probe' }, real: refused('ENOENT', 'no-such-region') },
    { name: 'bad-sub-op', what: 'sub-operation 99, which does not exist', request: { kind: 'sub-op', sub: 99 }, real: refused('EOPNOTSUPP', 'bad-command') },
    { name: 'rule-1', what: 'nv0 with an empty data range', request: add({ ...valid0, dataEpfn: valid0.dataSpfn }), real: refused('EINVAL', 'empty-range') },
    { name: 'rule-2', what: 'nv0 with the reserved range starting 2 MiB before the region', request: add({ ...valid0, rsvSpfn: nv0.spfn - 0x200n }), real: refused('EINVAL', 'outside-region') },
    { name: 'rule-3', what: 'nv0 with the data range starting on the last reserved page', request: add({ ...valid0, dataSpfn: valid0.rsvEpfn - 1n }), real: refused('EINVAL', 'reserved-data-overlap') },
    { name: 'rule-4', what: 'nv0 with one page less than the rule-4 minimum', request: add({ ...minimumReport(nv0), rsvEpfn: minimumReport(nv0).rsvEpfn - 1n }), real: refused('ENOSPC', 'reserved-too-small') },
    { name: 'rule-6', what: 'nv0 with the region starting 4 KiB into the NVDIMM', request: add({ ...valid0, spfn: nv0.spfn + 1n }), real: refused('EINVAL', 'region-not-2mib-aligned') },
    { name: 'beyond-frame-table', what: 'a region at 4 PiB, far beyond any frame table', request: add(plannerReport(far)), real: refused('EINVAL', 'beyond-frame-table'), standIn: standInAccepts('the stand-in has no frame table') },
    { name: 'pci-window', what: 'a region in the PCI MMIO window below 4 GiB', request: add(plannerReport(pciWindow)), real: refused('EINVAL', 'not-pmem'), standIn: notPmem },
    { name: 'ram', what: 'a region over the Dom0\'s RAM', request: add(plannerReport(ram)), real: refused('EINVAL', 'not-pmem'), standIn: notPmem },
    { name: 'hotplug-hole', what: 'a region in the firmware\'s hot-pluggable area where nothing is plugged', request: add(plannerReport(hotplugHole)), real: refused('EINVAL', 'not-pmem'), standIn: notPmem },
    { name: 'mapped-nv0', what: 'nv0 with the planner\'s layout while the Dom0\'s pmem driver maps it', request: add(valid0), real: refused('EBUSY', 'mapped'), standIn: standInAccepts('the stand-in cannot see who maps what') },
    { name: 'minimum-nv0', what: 'nv0, its driver unbound, with a reserved range of exactly the rule-4 minimum', request: add(minimumReport(nv0)), unbindFirst: 'nv0', real: refused('ENOSPC', 'reserved-exhausted'), standIn: standInAccepts('the stand-in does not model Xen\'s 2 MiB chunks') },
    { name: 'add-nv0', what: 'nv0 with the planner\'s layout', request: add(valid0), real: ok },
    { name: 're-add-nv0', what: 'nv0 again, the same request', request: add(valid0), real: refused('EEXIST', 'already-added') },
    { name: 'overlap', what: 'a 256 MiB region 128 MiB into nv0', request: add(plannerReport(shifted)), real: refused('EINVAL', 'overlaps-added-region') },
    { name: 'region-0', what: 'what Xen holds: region 0', request: { kind: 'region', index: 0 }, real: ok },
    { name: 'region-1-none', what: 'what Xen holds: region 1, before there is one', request: { kind: 'region', index: 1 }, real: refused('ENOENT', 'no-such-region') },
    { name: 'owner-nv0', what: 'who holds nv0\'s data frames', request: { kind: 'owner', pfn: valid0.dataSpfn }, real: ok },
    { name: 'mem-hotadd-nv0', what: 'XENPF_mem_hotadd over nv0', request: { kind: 'mem-hotadd', range: nv0 }, real: { errno: 'EBUSY', reason: null }, standIn: { errno: 'ENOSYS', reason: null, why: 'the stand-in knows no memory hot-add' } },
    { name: 'mapped-nv1', what: 'nv1 at its rule-4 minimum while the Dom0\'s pmem driver maps it', request: add(minimumReport(nv1)), real: refused('EBUSY', 'mapped'), standIn: standInAccepts('the stand-in cannot see who maps what') },
    { name: 'minimum-nv1', what: 'nv1, its driver unbound, at its rule-4 minimum (nv0 brought its M2P slot)', request: add(minimumReport(nv1)), unbindFirst: 'nv1', real: ok },
    { name: 'add-nv1', what: 'nv1 with the planner\'s layout: another layout of a region Xen holds', request: add(plannerReport(nv1)), real: refused('EINVAL', 'overlaps-added-region') },
    { name: 'region-1', what: 'what Xen holds: region 1', request: { kind: 'region', index: 1 }, real: ok },
  ];
}
