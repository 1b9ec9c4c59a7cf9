// How verdicts and plans are shown: one JSON shape shared by `inspect`, `list` and the daemon's
// status, and the human tables. Sizes and offsets in JSON are byte counts (numbers); in text they
// are hex ranges with human sizes beside them.

import type { LayoutPlan } from '../core/planner.js';
import { SUPERBLOCK_BYTES } from '../core/superblock.js';
import type { Verdict } from '../core/validate.js';
import { hex, hexRange, humanSize, PAGE_BYTES, toSafeNumber } from '../core/units.js';

export interface VerdictJson {
  status: Verdict['status'];
  reason?: string;
  message?: string;
  source?: 'primary' | 'backup';
  notes?: string[];
  superblock?: {
    version: string;
    uuid: string;
    namespaceUuid: string | null;
    reservedOffset: number;
    reservedSize: number;
    dataOffset: number;
    dataSize: number;
    writer: string;
    createdAt: number;
  };
  partitions: { number: number; start: number; size: number }[];
}

export function verdictToJson(verdict: Verdict): VerdictJson {
  const json: VerdictJson = { status: verdict.status, partitions: [] };
  if (verdict.status === 'invalid') json.reason = verdict.reason;
  if (verdict.status !== 'valid') json.message = verdict.message;
  const sb = verdict.status === 'absent' ? undefined : verdict.superblock;
  if (verdict.status === 'valid') {
    json.source = verdict.source;
    json.notes = verdict.notes;
  }
  // A damaged-but-checksummed block can carry any 64-bit value; JSON numbers hold 53 bits. Such a
  // block is described by the message (which names its numbers) rather than failing the report.
  if (sb && [sb.reservedOffset, sb.reservedSize, sb.dataOffset, sb.dataSize, sb.createdAt].every(fitsJsonNumber)) {
    json.superblock = {
      version: `${sb.majorVersion}.${sb.minorVersion}`,
      uuid: sb.uuid,
      namespaceUuid: sb.namespaceUuid,
      reservedOffset: toSafeNumber(sb.reservedOffset),
      reservedSize: toSafeNumber(sb.reservedSize),
      dataOffset: toSafeNumber(sb.dataOffset),
      dataSize: toSafeNumber(sb.dataSize),
      writer: sb.writer,
      createdAt: toSafeNumber(sb.createdAt),
    };
  }
  json.partitions = verdict.partitions.map((p) => ({ number: p.number, start: toSafeNumber(p.start), size: toSafeNumber(p.size) }));
  return json;
}

function fitsJsonNumber(value: bigint): boolean {
  return value >= 0n && value <= BigInt(Number.MAX_SAFE_INTEGER);
}

/** ISO time when the seconds fit a JavaScript Date, the raw count otherwise. */
function describeTime(secondsSinceEpoch: bigint): string {
  const milliseconds = Number(secondsSinceEpoch) * 1000;
  if (!Number.isFinite(milliseconds) || milliseconds > MAX_DATE_MS) return `${secondsSinceEpoch} s after the epoch`;
  return new Date(milliseconds).toISOString();
}

/** ECMAScript's largest valid time value. */
const MAX_DATE_MS = 8.64e15;

/** Range columns line up for people; hex ranges are inclusive, like /proc/iomem. */
function row(label: string, start: bigint, size: bigint, extra = ''): string {
  return `  ${label.padEnd(22)}${hexRange(start, size).padEnd(28)}${humanSize(size).padStart(12)}${extra ? '  ' + extra : ''}`;
}

export function describePlan(device: string, plan: LayoutPlan): string {
  const sb = BigInt(SUPERBLOCK_BYTES);
  const costs = plan.costs;
  const lines = [
    `Layout for ${device}: ${humanSize(plan.deviceSize)} (${hex(plan.deviceSize)} bytes, ${plan.deviceSize / PAGE_BYTES} pages), ${plan.sectorSize}-byte sectors`,
    row('primary super block', plan.primaryOffset, sb),
    row('reserved for Xen', plan.reservedOffset, plan.reservedSize,
      `Xen's minimum ${humanSize(plan.xenMinimumBytes)}; sized at ${costs.pageInfoBytes}+${costs.m2pBytes}+${costs.compatM2pBytes} bytes/page`),
    row('data area', plan.dataOffset, plan.dataSize),
    ...plan.partitions.map((p) => row(`  partition ${p.number}`, p.start, p.size)),
    row('backup super block', plan.backupOffset, sb),
  ];
  return lines.join('\n');
}

export function describeVerdict(device: string, size: bigint, verdict: Verdict): string {
  if (verdict.status === 'absent') return `${device}: no xen-pmem super block (${verdict.message})`;
  if (verdict.status === 'invalid') return `${device}: invalid [${verdict.reason}]: ${verdict.message}`;
  const sb = verdict.superblock;
  const lines = [
    `${device}: valid xen-pmem layout, format ${sb.majorVersion}.${sb.minorVersion}, read from the ${verdict.source} copy`,
    `  device size           ${humanSize(size)} (${hex(size)} bytes)`,
    `  reservation           ${sb.uuid}${sb.namespaceUuid ? `, bound to namespace ${sb.namespaceUuid}` : ''}`,
    `  written by            ${sb.writer} at ${describeTime(sb.createdAt)}`,
    row('reserved for Xen', sb.reservedOffset, sb.reservedSize),
    row('data area', sb.dataOffset, sb.dataSize),
    ...verdict.partitions.map((p) => row(`  partition ${p.number}`, p.start, p.size, p.name)),
    ...verdict.notes.map((note) => `  note: ${note}`),
  ];
  return lines.join('\n');
}
