// Requests a hostile or careless Dom0 could send to XENPF_pmem, generated from a seed over the
// machine's memory map as the Dom0 sees it (/proc/iomem): the planner's layout of windows in every
// part of the map, each of rules 1-6 broken on such a layout, six random 64-bit values, values at
// the edges of the fields, and the queries and sub-operations with random arguments. Pure: the
// xen-abi scenario sends them to the real hypervisor once it holds every persistent-memory range
// the firmware declares, so that any add Xen accepts then is one it should not have.

import type { PfnRange, PmemReport } from '../src/xen/interface.js';
import { plannerReport } from './guest/xen-abi-rows.js';
import type { AbiRequest } from './guest/xen-abi-rows.js';

/** A top-level range of /proc/iomem, end exclusive. */
export interface MemoryMapEntry {
  start: bigint;
  end: bigint;
  name: string;
}

export const HOSTILE_KINDS = [
  'planner', 'rule-1', 'rule-2', 'rule-3', 'rule-4', 'rule-6', 'random', 'edge', 'region', 'owner', 'sub-op',
] as const;
export type HostileKind = (typeof HOSTILE_KINDS)[number];

export interface HostileRequest {
  kind: HostileKind;
  /** The map entry the request was aimed at, or `anywhere`. */
  target: string;
  request: AbiRequest;
}

const PAGE_SHIFT = 12n;
const CHUNK_PAGES = 0x200n;
const U64_MAX = (1n << 64n) - 1n;

/** The top-level ranges of /proc/iomem (the lines that are not indented). */
export function parseIomem(text: string): MemoryMapEntry[] {
  const entries: MemoryMapEntry[] = [];
  for (const line of text.split('\n')) {
    const match = /^([0-9a-f]+)-([0-9a-f]+) : (.+)$/.exec(line);
    if (!match) continue;
    entries.push({ start: BigInt(`0x${match[1]}`), end: BigInt(`0x${match[2]}`) + 1n, name: match[3]!.trim() });
  }
  return entries;
}

/** xorshift64*: small, fast, and the same sequence for a seed on every Node. */
function generator(seed: number): { next(): bigint; below(n: bigint): bigint; pick<T>(items: readonly T[]): T } {
  let state = BigInt.asUintN(64, BigInt(seed) * 0x9e3779b97f4a7c15n) || 1n;
  const next = (): bigint => {
    state ^= state >> 12n;
    state = BigInt.asUintN(64, state ^ (state << 25n));
    state ^= state >> 27n;
    return BigInt.asUintN(64, state * 0x2545f4914f6cdd1dn);
  };
  return {
    next,
    below: (n) => (n <= 0n ? 0n : next() % n),
    pick: (items) => items[Number(next() % BigInt(items.length))]!,
  };
}

/** A 2 MiB-aligned window of 1 to 256 chunks that starts inside the entry (it may run past its end). */
function windowIn(entry: MemoryMapEntry, random: ReturnType<typeof generator>): PfnRange {
  const first = (entry.start >> PAGE_SHIFT) & ~(CHUNK_PAGES - 1n);
  const last = (entry.end - 1n) >> PAGE_SHIFT;
  const spfn = first + random.below((last - first) / CHUNK_PAGES + 1n) * CHUNK_PAGES;
  return { spfn, epfn: spfn + (1n + random.below(256n)) * CHUNK_PAGES };
}

function layoutOf(window: PfnRange): PmemReport {
  try {
    return plannerReport(window);
  } catch {
    // Too small for the planner: a reserved range of one chunk and data after it.
    return { spfn: window.spfn, epfn: window.epfn, rsvSpfn: window.spfn, rsvEpfn: window.spfn + 1n, dataSpfn: window.spfn + 1n, dataEpfn: window.epfn };
  }
}

function broken(kind: HostileKind, report: PmemReport, random: ReturnType<typeof generator>): PmemReport {
  switch (kind) {
    case 'rule-1': return random.below(2n) === 0n ? { ...report, dataEpfn: report.dataSpfn } : { ...report, epfn: report.spfn };
    case 'rule-2': return { ...report, rsvSpfn: report.spfn >= CHUNK_PAGES ? report.spfn - CHUNK_PAGES : report.epfn + 1n };
    case 'rule-3': return { ...report, dataSpfn: report.rsvEpfn - 1n };
    case 'rule-4': return { ...report, rsvEpfn: report.rsvSpfn + 1n };
    case 'rule-6': return { ...report, spfn: report.spfn + 1n + random.below(CHUNK_PAGES - 1n) };
    default: return report;
  }
}

const EDGES = [0n, 1n, 0x1ffn, 0x200n, 1n << 28n, 1n << 36n, 1n << 40n, 1n << 52n, (1n << 63n) - 1n, 1n << 63n, U64_MAX - 0x200n, U64_MAX];

/** `count` requests for the seed, every kind in turn and a random map entry for each. */
export function hostileRequests(map: readonly MemoryMapEntry[], seed: number, count: number): HostileRequest[] {
  if (map.length === 0) throw new Error('the memory map is empty');
  const random = generator(seed);
  const requests: HostileRequest[] = [];
  for (let i = 0; i < count; i++) {
    const kind = HOSTILE_KINDS[i % HOSTILE_KINDS.length]!;
    const entry = random.pick(map);
    switch (kind) {
      case 'planner':
      case 'rule-1':
      case 'rule-2':
      case 'rule-3':
      case 'rule-4':
      case 'rule-6':
        requests.push({ kind, target: entry.name, request: { kind: 'add', report: broken(kind, layoutOf(windowIn(entry, random)), random) } });
        break;
      case 'random': {
        const [spfn, epfn, rsvSpfn, rsvEpfn, dataSpfn, dataEpfn] = Array.from({ length: 6 }, () => random.next());
        requests.push({ kind, target: 'anywhere', request: { kind: 'add', report: { spfn: spfn!, epfn: epfn!, rsvSpfn: rsvSpfn!, rsvEpfn: rsvEpfn!, dataSpfn: dataSpfn!, dataEpfn: dataEpfn! } } });
        break;
      }
      case 'edge': {
        const [spfn, epfn, rsvSpfn, rsvEpfn, dataSpfn, dataEpfn] = Array.from({ length: 6 }, () => random.pick(EDGES));
        requests.push({ kind, target: 'anywhere', request: { kind: 'add', report: { spfn: spfn!, epfn: epfn!, rsvSpfn: rsvSpfn!, rsvEpfn: rsvEpfn!, dataSpfn: dataSpfn!, dataEpfn: dataEpfn! } } });
        break;
      }
      case 'region':
        requests.push({ kind, target: 'anywhere', request: { kind: 'region', index: Number(random.pick([0n, 1n, 2n, 3n, random.below(1n << 32n)])) } });
        break;
      case 'owner':
        requests.push({ kind, target: entry.name, request: { kind: 'owner', pfn: random.below(2n) === 0n ? windowIn(entry, random).spfn : random.next() } });
        break;
      case 'sub-op':
        requests.push({ kind, target: 'anywhere', request: { kind: 'sub-op', sub: Number(random.pick([0n, 1n, 4n, 5n, 99n, random.below(1n << 32n)])) } });
        break;
    }
  }
  return requests;
}
