// RETIRED. The wire format of XENPF_pmem_add (platform op 64) of the 2016 pmem RFC for Xen. No
// hypervisor implements it any more (upstream Xen gave op 64 to XENPF_get_dom0_console in 4.18)
// and nothing in the product sends it: reports go through XENPF_pmem, op 67
// (src/xen/xenpf-pmem.ts). This module stays only because the lab's scenarios (lab/guest,
// test/lab) still import it until they move to op 67; test/architecture.test.ts keeps every
// other module from importing it. Delete it with their last import.

import { hex, U64_MAX } from '../core/units.js';
import type { PmemReport } from './interface.js';

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

/** pmem_add carries a report's six PFNs as they are, in this order. */
export type PmemAddRequest = PmemReport;

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

/**
 * The probe: a pmem_add that breaks rule 1 (every PFN zero) with the unused rest of the union
 * filled with a canary. Only the RFC hypervisor answers it with exactly -1/EINVAL and leaves
 * all 136 bytes as they were; ENOSYS means no op 64, and success, another errno or a changed
 * byte mean op 64 is something else. Zero PFNs can never register anything, so it is harmless.
 */
export function pmemAddProbe(): Buffer {
  const probe = encodePmemAdd({ spfn: 0n, epfn: 0n, rsvSpfn: 0n, rsvEpfn: 0n, dataSpfn: 0n, dataEpfn: 0n });
  for (let offset = PMEM_ADD_PAYLOAD_END; offset < PLATFORM_OP_BYTES; offset++) {
    // Position-dependent, so that a copy of the canary to another offset still shows.
    probe[offset] = (0xa5 ^ offset) & 0xff;
  }
  return probe;
}
