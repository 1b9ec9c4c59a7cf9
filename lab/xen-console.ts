// Reads what the patched hypervisor says on its console about XENPF_pmem_add (hypervisor/,
// docs/hypervisor.md): one line per accepted add and one per refusal, with the six PFNs in the
// spelling the daemon logs them with (describePmemAdd). Pure: it takes the serial log's text.
//
//   (XEN) pmem: added spfn=0x100000 … data_epfn=0x10fe00: reserved pages used 0x400 of 0x400 (frame table 1, M2P 1, compat M2P 0 chunks of 2 MiB)
//   (XEN) pmem: refused spfn=0x0 … data_epfn=0x0: -EINVAL rule 1 empty-range: the region [0x0, 0x0) is empty: …
//   (XEN) pmem: refused spfn=… : -ENOMEM reserved-exhausted: the tables need 0x400 pages in 2 MiB chunks …

import type { XenRuleReason } from '../src/xen/interfaces/pmem-add.js';
import type { PmemAddRequest } from '../src/xen/platform-op.js';

/** Refusals only the hypervisor can give: the stand-in and checkPmemAddLikeXen know none of them. */
export type XenOwnReason =
  | 'beyond-frame-table'
  | 'pdx-hole'
  | 'overlaps-known-memory'
  | 'reserved-exhausted'
  | 'setup-failed';

export const XEN_OWN_REASONS: readonly XenOwnReason[] = [
  'beyond-frame-table',
  'pdx-hole',
  'overlaps-known-memory',
  'reserved-exhausted',
  'setup-failed',
];

export interface TableChunks {
  frameTable: number;
  m2p: number;
  compatM2p: number;
}

export type XenPmemLine =
  | {
      kind: 'added';
      request: PmemAddRequest;
      /** Pages of the reserved range Xen took for its tables (2 MiB chunks). */
      reservedPagesUsed: bigint;
      /** rsv_epfn - rsv_spfn, as Xen read it. */
      reservedPages: bigint;
      chunks: TableChunks;
      line: string;
    }
  | {
      kind: 'refused';
      request: PmemAddRequest;
      /** `EINVAL`, `ENOMEM`, … as Xen names it (`E?` for one it has no name for). */
      errno: string;
      /** 1–6 for the rules the Dom0 side shares, null for Xen's own checks. */
      rule: number | null;
      reason: XenRuleReason | XenOwnReason | string;
      message: string;
      line: string;
    };

const HEX = '0x[0-9a-f]+';
const LINE = new RegExp(
  `pmem: (added|refused) spfn=(${HEX}) epfn=(${HEX}) rsv_spfn=(${HEX}) rsv_epfn=(${HEX}) data_spfn=(${HEX}) data_epfn=(${HEX}): (.*)$`,
);
const ADDED = new RegExp(
  `^reserved pages used (${HEX}) of (${HEX}) \\(frame table (\\d+), M2P (\\d+), compat M2P (\\d+) chunks of 2 MiB\\)$`,
);
const REFUSED = /^-(E[A-Z0-9]+|E\?) (?:rule (\d+) )?([a-z0-9-]+): (.*)$/;

/**
 * Every pmem line in a serial log, in order. Lines may start with anything (the `(XEN) `
 * prefix, or a Dom0 console line Xen's output interrupted); colours and carriage returns are
 * ignored. A line that starts like a pmem line but does not parse is returned as a refusal with
 * reason `unparsed`, so that a format change cannot make lines silently disappear.
 */
export function parseXenPmemLines(serialText: string): XenPmemLine[] {
  const entries: XenPmemLine[] = [];
  for (const raw of serialText.split('\n')) {
    const text = raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '').trimEnd();
    const match = LINE.exec(text);
    if (!match) continue;
    const [, kind, ...rest] = match;
    const pfns = rest.slice(0, 6).map((value) => BigInt(value!));
    const request: PmemAddRequest = {
      spfn: pfns[0]!,
      epfn: pfns[1]!,
      rsvSpfn: pfns[2]!,
      rsvEpfn: pfns[3]!,
      dataSpfn: pfns[4]!,
      dataEpfn: pfns[5]!,
    };
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
          line,
        });
        continue;
      }
    } else {
      const refused = REFUSED.exec(tail);
      if (refused) {
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
