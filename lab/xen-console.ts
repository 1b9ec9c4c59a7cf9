// Reads what the patched hypervisor says on its console about XENPF_pmem (hypervisor/,
// docs/hypervisor.md): the firmware ranges it found at boot, one line per accepted add and one
// per refusal with the six PFNs in the spelling the daemon logs them with, and one per gift of
// data frames to a guest. Pure: it takes the serial log's text.
//
//   (XEN) pmem: firmware persistent memory (NFIT) [0x0000000100000000, 0x0000000110000000)
//   (XEN) pmem: added spfn=0x100000 … data_epfn=0x10fe00: reserved pages used 0x400 of 0xc00 (frame table 1, M2P 1, compat M2P 0 chunks of 2 MiB), data frames 0xf000, in 124 ms over 10 continuations
//   (XEN) pmem: refused spfn=0x0 … data_epfn=0x0: -EINVAL rule 1 empty-range: the region [0x0, 0x0) is empty: …
//   (XEN) pmem: refused spfn=… : -EBUSY mapped: d0 maps frame 0x108400 of the region through its page table at 0x…
//   (XEN) pmem: gave d1 frames [0x101e00, 0x141e00) at GFN 0x100000

import type { PmemReport } from '../src/xen/interface.js';
import { XENPF_PMEM_REASONS } from '../src/xen/xenpf-pmem.js';

export interface TableChunks {
  frameTable: number;
  m2p: number;
  compatM2p: number;
}

export type XenPmemLine =
  | {
      kind: 'added';
      request: PmemReport;
      /** Pages of the reserved range Xen took for its tables (2 MiB chunks). */
      reservedPagesUsed: bigint;
      /** rsv_epfn - rsv_spfn, as Xen read it. */
      reservedPages: bigint;
      chunks: TableChunks;
      /** Data frames the region's pool holds. */
      dataFrames: bigint;
      /** How long the add took, across its continuations. */
      ms: number;
      continuations: number;
      line: string;
    }
  | {
      kind: 'refused';
      request: PmemReport;
      /** `EINVAL`, `ENOSPC`, … as Xen names it (`E?` for one it has no name for). */
      errno: string;
      /** 1–6 for the rules the Dom0 side shares, null for Xen's own checks. */
      rule: number | null;
      /** A code of XENPF_PMEM_REASONS, or `unparsed`. */
      reason: string;
      message: string;
      line: string;
    };

export interface XenFirmwareRange {
  kind: 'nfit' | 'srat-hotplug';
  start: bigint;
  end: bigint;
}

export interface XenGift {
  domid: number;
  mfn: bigint;
  end: bigint;
  gfn: bigint;
}

const HEX = '0x[0-9a-f]+';
const LINE = new RegExp(
  `pmem: (added|refused) spfn=(${HEX}) epfn=(${HEX}) rsv_spfn=(${HEX}) rsv_epfn=(${HEX}) data_spfn=(${HEX}) data_epfn=(${HEX}): (.*)$`,
);
const ADDED = new RegExp(
  `^reserved pages used (${HEX}) of (${HEX}) \\(frame table (\\d+), M2P (\\d+), compat M2P (\\d+) chunks of 2 MiB\\), data frames (${HEX}), in (\\d+) ms over (\\d+) continuations$`,
);
const REFUSED = /^-(E[A-Z0-9]+|E\?) (?:rule (\d+) )?([a-z0-9-]+): (.*)$/;
const FIRMWARE = /pmem: firmware (persistent memory \(NFIT\)|hot-pluggable memory \(SRAT\)) \[(0x[0-9a-f]+), (0x[0-9a-f]+)\)/;
const GAVE = /pmem: gave d(\d+) frames \[(0x[0-9a-f]+), (0x[0-9a-f]+)\) at GFN (0x[0-9a-f]+)/;

/** Serial text, line by line, without colours and carriage returns. */
function cleanLines(serialText: string): string[] {
  return serialText.split('\n').map((raw) => raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '').trimEnd());
}

/**
 * Every add and refusal line in a serial log, in order. Lines may start with anything (the
 * `(XEN) ` prefix, or a Dom0 console line Xen's output interrupted). A line that starts like a
 * pmem line but does not parse is returned as a refusal with reason `unparsed`, so that a format
 * change cannot make lines silently disappear.
 */
export function parseXenPmemLines(serialText: string): XenPmemLine[] {
  const entries: XenPmemLine[] = [];
  for (const text of cleanLines(serialText)) {
    const match = LINE.exec(text);
    if (!match) continue;
    const [, kind, ...rest] = match;
    const [spfn, epfn, rsvSpfn, rsvEpfn, dataSpfn, dataEpfn] = rest.slice(0, 6).map((value) => BigInt(value!));
    const request: PmemReport = { spfn: spfn!, epfn: epfn!, rsvSpfn: rsvSpfn!, rsvEpfn: rsvEpfn!, dataSpfn: dataSpfn!, dataEpfn: dataEpfn! };
    const tail = rest[6]!;
    const line = text.slice(text.indexOf('pmem: '));
    if (kind === 'added') {
      const added = ADDED.exec(tail);
      if (added) {
        entries.push({
          kind: 'added',
          request,
          reservedPagesUsed: BigInt(added[1]!),
          reservedPages: BigInt(added[2]!),
          chunks: { frameTable: Number(added[3]), m2p: Number(added[4]), compatM2p: Number(added[5]) },
          dataFrames: BigInt(added[6]!),
          ms: Number(added[7]),
          continuations: Number(added[8]),
          line,
        });
        continue;
      }
    } else {
      const refused = REFUSED.exec(tail);
      if (refused && (XENPF_PMEM_REASONS as readonly string[]).includes(refused[3]!)) {
        entries.push({
          kind: 'refused',
          request,
          errno: refused[1]!,
          rule: refused[2] === undefined ? null : Number(refused[2]),
          reason: refused[3]!,
          message: refused[4]!,
          line,
        });
        continue;
      }
    }
    entries.push({ kind: 'refused', request, errno: 'E?', rule: null, reason: 'unparsed', message: tail, line });
  }
  return entries;
}

/** The persistent memory ranges Xen found in the firmware's tables at boot. */
export function parseXenFirmwareRanges(serialText: string): XenFirmwareRange[] {
  return cleanLines(serialText).flatMap((text) => {
    const match = FIRMWARE.exec(text);
    return match ? [{ kind: match[1]!.includes('NFIT') ? 'nfit' as const : 'srat-hotplug' as const, start: BigInt(match[2]!), end: BigInt(match[3]!) }] : [];
  });
}

/** Data frames Xen gave to guests (XENPF_PMEM_assign), in order. */
export function parseXenGifts(serialText: string): XenGift[] {
  return cleanLines(serialText).flatMap((text) => {
    const match = GAVE.exec(text);
    return match ? [{ domid: Number(match[1]), mfn: BigInt(match[2]!), end: BigInt(match[3]!), gfn: BigInt(match[4]!) }] : [];
  });
}
