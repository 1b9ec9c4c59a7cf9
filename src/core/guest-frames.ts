// Which frames of a reported data range a guest gets, and where they appear in it: the pure part
// of `xen-pmem attach`. Everything is in bytes until it is proven page-aligned and inside the
// data range; the answer is in frames, as XENPF_PMEM_assign takes them. (The guest learns of the
// range from the ACPI tables of guest-acpi.ts.)

import { GiB, halfOpenRange, hex, humanSize, isAligned } from './units.js';

const PAGE = 4096n;

/** The guest address pmem goes to unless the operator names another: above a small guest's RAM. */
export const DEFAULT_GUEST_ADDRESS = 4n * GiB;

export interface AttachRequest {
  /** The data range Xen holds, in frames. */
  dataSpfn: bigint;
  dataEpfn: bigint;
  /** From the start of the data range, in bytes. */
  offset: bigint;
  /** Bytes; null for the rest of the data range. */
  size: bigint | null;
  /** Guest-physical address, bytes. */
  guestAddress: bigint;
}

export interface GuestPmem {
  mfn: bigint;
  gfn: bigint;
  nr: bigint;
}

export type AttachPlan =
  | { ok: true; frames: GuestPmem }
  | { ok: false; reason: 'unaligned' | 'empty' | 'outside-data' | 'address-overflow'; message: string };

export function planGuestPmem(request: AttachRequest): AttachPlan {
  const dataBytes = (request.dataEpfn - request.dataSpfn) * PAGE;
  const size = request.size ?? dataBytes - request.offset;
  for (const [name, value] of [['offset', request.offset], ['size', size], ['guest address', request.guestAddress]] as const) {
    if (!isAligned(value, PAGE)) return { ok: false, reason: 'unaligned', message: `the ${name} ${hex(value)} is not a multiple of 4 KiB` };
  }
  if (size <= 0n) return { ok: false, reason: 'empty', message: `nothing to give: ${humanSize(dataBytes)} of data area and an offset of ${hex(request.offset)}` };
  if (request.offset < 0n || request.offset + size > dataBytes) {
    return {
      ok: false, reason: 'outside-data',
      message: `${humanSize(size)} from offset ${hex(request.offset)} does not fit the data area of ${humanSize(dataBytes)} (frames ${halfOpenRange(request.dataSpfn, request.dataEpfn)})`,
    };
  }
  // x86-64 guests address 52 bits at most.
  if (request.guestAddress + size > 1n << 52n) {
    return { ok: false, reason: 'address-overflow', message: `guest addresses ${halfOpenRange(request.guestAddress, request.guestAddress + size)} go beyond 52 bits` };
  }
  return {
    ok: true,
    frames: {
      mfn: request.dataSpfn + request.offset / PAGE,
      gfn: request.guestAddress / PAGE,
      nr: size / PAGE,
    },
  };
}
