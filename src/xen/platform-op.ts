// The wire format of `struct xen_platform_op` for XENPF_pmem_add, as defined by the public pmem
// RFC for Xen, and the checks that RFC's hypervisor applies to it. Pure: no I/O. This module is
// the spec of those 136 bytes; the hypercall shell and the test hypervisor both follow it.

import { xenMinimumReservedPages } from '../core/xen-sizing.js';
import { halfOpenRange, hex, rangesOverlap, U64_MAX } from '../core/units.js';

/** `sizeof(struct xen_platform_op)` on x86-64: cmd, interface_version and a 128-byte union. */
export const PLATFORM_OP_BYTES = 136;
/** Platform op number of pmem_add in the RFC. Upstream Xen 4.18+ gives 64 to another operation. */
export const XENPF_PMEM_ADD = 64;
/** Xen refuses (EACCES) a platform op whose interface_version differs from its own. */
export const XENPF_INTERFACE_VERSION = 0x03000001;
/** xen_version sub-commands. */
export const XENVER_VERSION = 0;
export const XENVER_EXTRAVERSION = 1;
/** `xen_extraversion_t` is a 16-byte NUL-padded string. */
export const XENVER_EXTRAVERSION_BYTES = 16;

/** Byte offsets inside the struct; the union starts at 8 and pmem_add uses its first 48 bytes. */
export const PLATFORM_OP_OFFSETS = {
  cmd: 0,
  interfaceVersion: 4,
  union: 8,
  spfn: 8,
  epfn: 16,
  rsvSpfn: 24,
  rsvEpfn: 32,
  dataSpfn: 40,
  dataEpfn: 48,
} as const;
/** First byte of the union that pmem_add leaves unused. */
export const PMEM_ADD_PAYLOAD_END = 56;

/** All end PFNs are exclusive. PFN = physical address >> 12. */
export interface PmemAddRequest {
  spfn: bigint;
  epfn: bigint;
  rsvSpfn: bigint;
  rsvEpfn: bigint;
  dataSpfn: bigint;
  dataEpfn: bigint;
}

export interface PfnRange {
  spfn: bigint;
  epfn: bigint;
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

/**
 * Encodes a pmem_add request into a fresh 136-byte buffer. The rest of the union is zero (or
 * `fill` when given: the capability probe uses a canary there to see whether Xen wrote into it).
 * Throws RangeError for a PFN outside u64: that is a caller's bug, not input to explain.
 */
export function encodePmemAdd(req: PmemAddRequest, fill = 0): Buffer {
  const buf = Buffer.alloc(PLATFORM_OP_BYTES, fill);
  buf.writeUInt32LE(XENPF_PMEM_ADD, PLATFORM_OP_OFFSETS.cmd);
  buf.writeUInt32LE(XENPF_INTERFACE_VERSION, PLATFORM_OP_OFFSETS.interfaceVersion);
  for (const field of PFN_FIELDS) {
    const value = req[field];
    if (value < 0n || value > U64_MAX) {
      throw new RangeError(`${WIRE_NAMES[field]} ${value} does not fit an unsigned 64-bit field`);
    }
    buf.writeBigUInt64LE(value, PLATFORM_OP_OFFSETS[field]);
  }
  return buf;
}

export type DecodedPlatformOp =
  | { ok: true; cmd: number; interfaceVersion: number; request: PmemAddRequest }
  | { ok: false; reason: 'wrong-size'; message: string };

/** Reads cmd, interface_version and the six PFNs back; any cmd is accepted so logs can show it. */
export function decodePmemAdd(buf: Buffer): DecodedPlatformOp {
  if (buf.length !== PLATFORM_OP_BYTES) {
    return {
      ok: false,
      reason: 'wrong-size',
      message: `a platform op is ${PLATFORM_OP_BYTES} bytes, this buffer has ${buf.length}`,
    };
  }
  const read = (field: (typeof PFN_FIELDS)[number]) => buf.readBigUInt64LE(PLATFORM_OP_OFFSETS[field]);
  return {
    ok: true,
    cmd: buf.readUInt32LE(PLATFORM_OP_OFFSETS.cmd),
    interfaceVersion: buf.readUInt32LE(PLATFORM_OP_OFFSETS.interfaceVersion),
    request: {
      spfn: read('spfn'),
      epfn: read('epfn'),
      rsvSpfn: read('rsvSpfn'),
      rsvEpfn: read('rsvEpfn'),
      dataSpfn: read('dataSpfn'),
      dataEpfn: read('dataEpfn'),
    },
  };
}

/** `spfn=0x100000 epfn=0x110000 rsv_spfn=… data_epfn=…`: all six PFNs, in wire order, in hex. */
export function describePmemAdd(req: PmemAddRequest): string {
  return PFN_FIELDS.map((field) => `${WIRE_NAMES[field]}=${hex(req[field])}`).join(' ');
}

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

function overlaps(a: PfnRange, b: PfnRange): boolean {
  return rangesOverlap(a.spfn, a.epfn, b.spfn, b.epfn);
}

const range = halfOpenRange;

/**
 * The RFC hypervisor's checks on XENPF_pmem_add, rules 1–6 of docs/hypercall.md, in that order;
 * the first broken rule is reported. `alreadyAdded` is what this side knows Xen already holds.
 * The test hypervisor applies the same rules in C, so both must change together.
 */
export function checkPmemAddLikeXen(req: PmemAddRequest, alreadyAdded: PfnRange[]): XenCheck {
  const fail = (rule: number, reason: XenRuleReason, message: string): XenCheck => ({
    ok: false,
    rule,
    reason,
    message,
  });

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
      return fail(
        2,
        'outside-region',
        `the ${name} ${range(start, end)} is not inside the region ${range(req.spfn, req.epfn)}`,
      );
    }
  }

  const reserved = { spfn: req.rsvSpfn, epfn: req.rsvEpfn };
  const data = { spfn: req.dataSpfn, epfn: req.dataEpfn };
  if (overlaps(reserved, data)) {
    return fail(
      3,
      'reserved-data-overlap',
      `the reserved range ${range(reserved.spfn, reserved.epfn)} overlaps the data range ${range(data.spfn, data.epfn)}`,
    );
  }

  const totalPages = req.epfn - req.spfn;
  const neededPages = xenMinimumReservedPages(totalPages);
  const reservedPages = req.rsvEpfn - req.rsvSpfn;
  if (reservedPages < neededPages) {
    return fail(
      4,
      'reserved-too-small',
      `the reserved range has ${hex(reservedPages)} pages but a region of ${hex(totalPages)} pages needs at least ${hex(neededPages)} (32 bytes of page_info and 8 bytes of M2P per page)`,
    );
  }

  const region = { spfn: req.spfn, epfn: req.epfn };
  const clash = alreadyAdded.find((added) => overlaps(region, added));
  if (clash) {
    return fail(
      5,
      'overlaps-added-region',
      `the region ${range(region.spfn, region.epfn)} overlaps ${range(clash.spfn, clash.epfn)}, which was already added (Xen has no remove operation)`,
    );
  }

  if (req.spfn % RFC_REGION_ALIGN_PAGES !== 0n || req.epfn % RFC_REGION_ALIGN_PAGES !== 0n) {
    return fail(
      6,
      'region-not-2mib-aligned',
      `the region ${range(req.spfn, req.epfn)} must start and end on a 2 MiB boundary (a multiple of ${hex(RFC_REGION_ALIGN_PAGES)} pages)`,
    );
  }

  return { ok: true };
}
