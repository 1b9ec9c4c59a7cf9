// The wire format of `struct xen_platform_op` for XENPF_pmem (platform op 67), as Xen's public
// header defines it (docs/hypercall.md has the table). Pure: no I/O. This module is the spec of
// those 136 bytes; the interface (src/xen/interfaces/xenpf-pmem.ts) and the test hypervisor
// (test/hypervisor/test-xencall.c) both follow it.

import { hex, U64_MAX } from '../core/units.js';
import type { PmemReport } from './interface.js';

/** `sizeof(struct xen_platform_op)` on x86-64: cmd, interface_version and a 128-byte union. */
export const PLATFORM_OP_BYTES = 136;
/** XENPF_pmem. Upstream's highest op as of 4.23-unstable is 66 (XENPF_microcode_update2). */
export const XENPF_PMEM = 67;
/** Xen refuses (EACCES) a platform op whose interface_version differs from its own. */
export const XENPF_INTERFACE_VERSION = 0x03000001;
/** What every answer to a known sub-operation writes into `abi`. */
export const XENPF_PMEM_ABI = 1;
/** xen_version sub-commands. */
export const XENVER_VERSION = 0;
export const XENVER_EXTRAVERSION = 1;
/** `xen_extraversion_t` is a 16-byte NUL-padded string. */
export const XENVER_EXTRAVERSION_BYTES = 16;
/** The owner sub-operation's answer when no domain holds a frame at or after the one asked. */
export const DOMID_INVALID = 0x7ff4;
/** The region index of the probe: no hypervisor holds that many regions. */
export const PROBE_INDEX = 0xffffffff;

/** XENPF_PMEM_*: the sub-operations, in `xenpf_pmem.cmd`. */
export const SUB_OP = { add: 1, region: 2, owner: 3, assign: 4 } as const;
export type SubOp = keyof typeof SUB_OP;

/** Byte offsets from the start of the platform op. */
export const OFFSETS = {
  cmd: 0,
  interfaceVersion: 4,
  sub: 8,
  abi: 12,
  reason: 14,
  /** add: the six PFNs; region: index; owner: pfn. */
  union: 16,
  regionNr: 20,
  regionLayout: 24,
  frameTableChunks: 72,
  m2pChunks: 76,
  compatM2pChunks: 80,
  freeFrames: 88,
  ownerSpfn: 24,
  ownerEpfn: 32,
  ownerDomid: 40,
  assignMfn: 16,
  assignGfn: 24,
  assignNr: 32,
  assignDone: 40,
  assignDomid: 48,
} as const;

/**
 * XENPF_PMEM_R_*: why Xen refused, by number, with the reason code the daemon, the journal and
 * `xen-pmem status` use. Rules 1-6 keep the codes of checkPmemAddLikeXen.
 */
export const XENPF_PMEM_REASONS = [
  'none',
  'empty-range',
  'outside-region',
  'reserved-data-overlap',
  'reserved-too-small',
  'overlaps-added-region',
  'region-not-2mib-aligned',
  'already-added',
  'beyond-frame-table',
  'pdx-hole',
  'not-pmem',
  'firmware-memory',
  'read-only-mmio',
  'known-memory',
  'not-permitted',
  'other-domain-access',
  'mapped',
  'reserved-exhausted',
  'no-memory',
  'busy',
  'unsupported-caller',
  'no-such-region',
  'not-data',
  'held',
  'no-such-domain',
  'unsupported-domain',
  'over-allocation',
  'bad-command',
  'gfn-in-use',
] as const;
export type XenpfPmemReason = (typeof XENPF_PMEM_REASONS)[number];

export function reasonCodeOf(reason: number): XenpfPmemReason | `xen-reason-${number}` {
  return XENPF_PMEM_REASONS[reason] ?? `xen-reason-${reason}`;
}

export function reasonNumberOf(code: XenpfPmemReason): number {
  return XENPF_PMEM_REASONS.indexOf(code);
}

/** Field order on the wire; also the order in which logs print them. */
const PFN_FIELDS = ['spfn', 'epfn', 'rsvSpfn', 'rsvEpfn', 'dataSpfn', 'dataEpfn'] as const;

/** The names Xen's own header uses, so that logs can be compared with the hypervisor's side. */
const WIRE_NAMES: Record<(typeof PFN_FIELDS)[number], string> = {
  spfn: 'spfn',
  epfn: 'epfn',
  rsvSpfn: 'rsv_spfn',
  rsvEpfn: 'rsv_epfn',
  dataSpfn: 'data_spfn',
  dataEpfn: 'data_epfn',
};

function header(sub: SubOp): Buffer {
  const buf = Buffer.alloc(PLATFORM_OP_BYTES);
  buf.writeUInt32LE(XENPF_PMEM, OFFSETS.cmd);
  buf.writeUInt32LE(XENPF_INTERFACE_VERSION, OFFSETS.interfaceVersion);
  buf.writeUInt32LE(SUB_OP[sub], OFFSETS.sub);
  return buf;
}

function writeU64(buf: Buffer, name: string, value: bigint, offset: number): void {
  if (value < 0n || value > U64_MAX) throw new RangeError(`${name} ${value} does not fit an unsigned 64-bit field`);
  buf.writeBigUInt64LE(value, offset);
}

function writeLayout(buf: Buffer, report: PmemReport, at: number): void {
  PFN_FIELDS.forEach((field, i) => writeU64(buf, WIRE_NAMES[field], report[field], at + 8 * i));
}

function readLayout(buf: Buffer, at: number): PmemReport {
  const [spfn, epfn, rsvSpfn, rsvEpfn, dataSpfn, dataEpfn] = PFN_FIELDS.map((_, i) => buf.readBigUInt64LE(at + 8 * i));
  return { spfn: spfn!, epfn: epfn!, rsvSpfn: rsvSpfn!, rsvEpfn: rsvEpfn!, dataSpfn: dataSpfn!, dataEpfn: dataEpfn! };
}

/** XENPF_PMEM_add. Throws RangeError for a PFN outside u64: a caller's bug, not input to explain. */
export function encodeAdd(report: PmemReport): Buffer {
  const buf = header('add');
  writeLayout(buf, report, OFFSETS.union);
  return buf;
}

/** XENPF_PMEM_region for the index-th region (PROBE_INDEX for the probe). */
export function encodeRegion(index: number): Buffer {
  const buf = header('region');
  buf.writeUInt32LE(index, OFFSETS.union);
  return buf;
}

/** XENPF_PMEM_owner: the first run of data frames one domain holds at or after `pfn`. */
export function encodeOwner(pfn: bigint): Buffer {
  const buf = header('owner');
  writeU64(buf, 'pfn', pfn, OFFSETS.union);
  return buf;
}

/** Data frames [mfn, mfn + nr) given to domain `domid` at [gfn, gfn + nr). */
export interface AssignRequest {
  mfn: bigint;
  gfn: bigint;
  nr: bigint;
  domid: number;
}

/** XENPF_PMEM_assign; `done` starts at 0 (Xen's continuations count it up themselves). */
export function encodeAssign(request: AssignRequest): Buffer {
  const buf = header('assign');
  writeU64(buf, 'mfn', request.mfn, OFFSETS.assignMfn);
  writeU64(buf, 'gfn', request.gfn, OFFSETS.assignGfn);
  writeU64(buf, 'nr', request.nr, OFFSETS.assignNr);
  if (!Number.isInteger(request.domid) || request.domid < 0 || request.domid > 0xffff) throw new RangeError(`domid ${request.domid} does not fit a 16-bit field`);
  buf.writeUInt16LE(request.domid, OFFSETS.assignDomid);
  return buf;
}

/** How many frames Xen gave before it answered (all of them on success). */
export function decodeAssignDone(buf: Buffer): bigint {
  return buf.readBigUInt64LE(OFFSETS.assignDone);
}

/** A sub-operation number this side does not use, to show what Xen answers to it. */
export function encodeSubOp(sub: number): Buffer {
  const buf = header('add');
  buf.writeUInt32LE(sub, OFFSETS.sub);
  return buf;
}

/** What every answer to a known sub-operation carries back: the ABI and the reason. */
export interface PmemAnswerHeader {
  cmd: number;
  sub: number;
  abi: number;
  reason: number;
}

export function decodeHeader(buf: Buffer): PmemAnswerHeader {
  return {
    cmd: buf.readUInt32LE(OFFSETS.cmd),
    sub: buf.readUInt32LE(OFFSETS.sub),
    abi: buf.readUInt16LE(OFFSETS.abi),
    reason: buf.readUInt16LE(OFFSETS.reason),
  };
}

/** The six PFNs an add carries (for the test hypervisor's side and logs). */
export function decodeAdd(buf: Buffer): PmemReport {
  return readLayout(buf, OFFSETS.union);
}

/** A region as XENPF_PMEM_region describes it. */
export interface RegionAnswer {
  index: number;
  nrRegions: number;
  layout: PmemReport;
  frameTableChunks: number;
  m2pChunks: number;
  compatM2pChunks: number;
  /** Data frames no domain holds. */
  freeFrames: bigint;
}

export function decodeRegion(buf: Buffer): RegionAnswer {
  return {
    index: buf.readUInt32LE(OFFSETS.union),
    nrRegions: buf.readUInt32LE(OFFSETS.regionNr),
    layout: readLayout(buf, OFFSETS.regionLayout),
    frameTableChunks: buf.readUInt32LE(OFFSETS.frameTableChunks),
    m2pChunks: buf.readUInt32LE(OFFSETS.m2pChunks),
    compatM2pChunks: buf.readUInt32LE(OFFSETS.compatM2pChunks),
    freeFrames: buf.readBigUInt64LE(OFFSETS.freeFrames),
  };
}

/** A run of data frames one domain holds, as XENPF_PMEM_owner answers. */
export interface OwnerAnswer {
  spfn: bigint;
  epfn: bigint;
  domid: number;
}

export function decodeOwner(buf: Buffer): OwnerAnswer {
  return {
    spfn: buf.readBigUInt64LE(OFFSETS.ownerSpfn),
    epfn: buf.readBigUInt64LE(OFFSETS.ownerEpfn),
    domid: buf.readUInt16LE(OFFSETS.ownerDomid),
  };
}

/** `spfn=0x100000 epfn=0x110000 rsv_spfn=… data_epfn=…`: all six PFNs, in wire order, in hex. */
export function describeLayout(report: PmemReport): string {
  return PFN_FIELDS.map((field) => `${WIRE_NAMES[field]}=${hex(report[field])}`).join(' ');
}
