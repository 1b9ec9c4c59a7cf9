// How many 2 MiB chunks of a region's reserved range the patched hypervisor takes for its
// tables, modelled on its own count (io_frames_tables_needed() in hypervisor/patches/0004):
//
//   frame table  one chunk per pdx group of the region that Xen does not describe yet
//                (a group is 65,536 frames = 256 MiB; its page_infos are exactly 2 MiB)
//   M2P          one chunk per 2 MiB slot of the M2P not mapped yet (262,144 frames = 1 GiB)
//   compat M2P   one chunk per 2 MiB slot of the 32-bit M2P (524,288 frames = 2 GiB), only with
//                32-bit PV guests enabled and only below the compat M2P's end (1 TiB)
//
// and the chunks a reserved range holds: whole 2 MiB-aligned chunks only. Pure, for the lab's
// expectations and the figures in docs/hypervisor.md. It assumes no pdx compression (none in
// the lab: Xen ignores QEMU's SRAT) and no 1 GiB M2P mappings (Xen makes those only at boot,
// for RAM).

import type { PfnRange } from '../src/xen/interface.js';
import type { TableChunks } from './xen-console.js';

export const PDX_GROUP_FRAMES = 0x10000n;
export const M2P_SLOT_FRAMES = 0x40000n;
export const COMPAT_M2P_SLOT_FRAMES = 0x80000n;
/** Frames the compat M2P covers: 1 GiB of 4-byte entries. */
export const COMPAT_M2P_FRAMES = 1n << 28n;
export const CHUNK_PAGES = 512n;

export interface XenTablesView {
  /** pdx groups with a frame table (`pdx_group_valid`). */
  groups: Set<bigint>;
  /** M2P slots mapped. */
  m2pSlots: Set<bigint>;
  /** compat M2P slots mapped (only tracked with `pv32`). */
  compatSlots: Set<bigint>;
  pv32: boolean;
}

function indices(range: PfnRange, unit: bigint): bigint[] {
  const out: bigint[] = [];
  for (let index = range.spfn / unit; index * unit < range.epfn; index++) out.push(index);
  return out;
}

function slotHasGroup(slot: bigint, slotFrames: bigint, groups: Set<bigint>): boolean {
  const first = (slot * slotFrames) / PDX_GROUP_FRAMES;
  for (let group = first; group < first + slotFrames / PDX_GROUP_FRAMES; group++) if (groups.has(group)) return true;
  return false;
}

/** Xen's view at boot: RAM ranges have frame tables and M2P (paging_init()). */
export function bootView(ram: PfnRange[], pv32 = false): XenTablesView {
  const view: XenTablesView = { groups: new Set(), m2pSlots: new Set(), compatSlots: new Set(), pv32 };
  for (const range of ram) for (const group of indices(range, PDX_GROUP_FRAMES)) view.groups.add(group);
  for (const group of view.groups) {
    view.m2pSlots.add((group * PDX_GROUP_FRAMES) / M2P_SLOT_FRAMES);
    if (pv32 && group * PDX_GROUP_FRAMES < COMPAT_M2P_FRAMES) view.compatSlots.add((group * PDX_GROUP_FRAMES) / COMPAT_M2P_SLOT_FRAMES);
  }
  return view;
}

/** The chunks adding `region` takes, given what Xen describes already. */
export function tablesNeeded(view: XenTablesView, region: PfnRange): TableChunks {
  const after = new Set([...view.groups, ...indices(region, PDX_GROUP_FRAMES)]);
  const frameTable = indices(region, PDX_GROUP_FRAMES).filter((group) => !view.groups.has(group)).length;
  const m2p = indices(region, M2P_SLOT_FRAMES)
    .filter((slot) => !view.m2pSlots.has(slot) && slotHasGroup(slot, M2P_SLOT_FRAMES, after)).length;
  const compatRange = { spfn: region.spfn, epfn: region.epfn < COMPAT_M2P_FRAMES ? region.epfn : COMPAT_M2P_FRAMES };
  const compatM2p = !view.pv32 || compatRange.spfn >= compatRange.epfn
    ? 0
    : indices(compatRange, COMPAT_M2P_SLOT_FRAMES)
      .filter((slot) => !view.compatSlots.has(slot) && slotHasGroup(slot, COMPAT_M2P_SLOT_FRAMES, after)).length;
  return { frameTable, m2p, compatM2p };
}

/** The view after Xen accepted `region`. */
export function viewAfter(view: XenTablesView, region: PfnRange): XenTablesView {
  const next: XenTablesView = {
    groups: new Set(view.groups),
    m2pSlots: new Set(view.m2pSlots),
    compatSlots: new Set(view.compatSlots),
    pv32: view.pv32,
  };
  for (const group of indices(region, PDX_GROUP_FRAMES)) next.groups.add(group);
  for (const slot of indices(region, M2P_SLOT_FRAMES)) next.m2pSlots.add(slot);
  if (view.pv32 && region.spfn < COMPAT_M2P_FRAMES) {
    const capped = { spfn: region.spfn, epfn: region.epfn < COMPAT_M2P_FRAMES ? region.epfn : COMPAT_M2P_FRAMES };
    for (const slot of indices(capped, COMPAT_M2P_SLOT_FRAMES)) next.compatSlots.add(slot);
  }
  return next;
}

export function chunkTotal(chunks: TableChunks): number {
  return chunks.frameTable + chunks.m2p + chunks.compatM2p;
}

/** Whole 2 MiB-aligned chunks inside [rsvSpfn, rsvEpfn): what the hypervisor can hand out. */
export function usableChunks(rsvSpfn: bigint, rsvEpfn: bigint): bigint {
  const start = ((rsvSpfn + CHUNK_PAGES - 1n) / CHUNK_PAGES) * CHUNK_PAGES;
  return start < rsvEpfn ? (rsvEpfn - start) / CHUNK_PAGES : 0n;
}

/** `sizeof(struct page_info)` on x86-64 without CONFIG_BIGMEM. */
export const PAGE_INFO_BYTES = 32;
const PGC_ALLOCATED = 1n << 63n;
/** Xen's own frame, never freed to a domain's heap: what the boot-time M2P's frames are too. */
const PGC_XEN_HEAP = 1n << 62n;
const PGT_VALIDATED = 1n << 58n;

/**
 * What is wrong with the page_infos of a region's frames as a frame-table chunk holds them (from
 * the region's first frame, which starts its pdx group): every frame is no one's (all zero) but
 * those of the M2P chunks and the compat M2P chunks after them (CONFIG_PV32), which Xen shares
 * read-only with privileged guests as Xen's own frames (owner dom_xen, Xen heap, one reference,
 * type none, validated). Empty when they are right.
 */
export function regionPageInfoProblems(bytes: Buffer, frames: number, sharedFrames: { first: number; end: number }): string[] {
  const problems: string[] = [];
  for (let i = 0; i < frames && problems.length < 5; i++) {
    const entry = bytes.subarray(i * PAGE_INFO_BYTES, (i + 1) * PAGE_INFO_BYTES);
    if (entry.length < PAGE_INFO_BYTES) {
      problems.push(`page_info +0x${i.toString(16)} lies past the ${bytes.length} bytes read`);
      break;
    }
    const countInfo = entry.readBigUInt64LE(8);
    const typeInfo = entry.readBigUInt64LE(16);
    const owner = entry.readUInt32LE(24);
    if (i >= sharedFrames.first && i < sharedFrames.end) {
      if (countInfo !== (PGC_ALLOCATED | PGC_XEN_HEAP | 1n) || typeInfo !== (PGT_VALIDATED | 1n) || owner === 0) {
        problems.push(`frame +0x${i.toString(16)} (M2P chunk): count_info 0x${countInfo.toString(16)}, type_info 0x${typeInfo.toString(16)}, owner 0x${owner.toString(16)}; want PGC_allocated | PGC_xen_heap | 1, PGT_none | PGT_validated | 1, dom_xen`);
      }
    } else if (!entry.every((byte) => byte === 0)) {
      problems.push(`frame +0x${i.toString(16)}: page_info ${entry.toString('hex')} is not all zero (no owner, no reference, no type)`);
    }
  }
  return problems;
}
