// The verdict on a device: is there a super block, and is it valid for this very device and its
// partition table? Pure: the shell (src/io/scan.ts) reads the bytes and hands them over.
//
// Order matters and mirrors the kernel's nd_pfn_validate: find (signature), trust (checksum,
// version, which copy), bind (this device's size, this namespace), then each meaning check with its
// own reason. The first failure wins, so every damaged image gets one stable reason.

import type { GptPartition, GptTable } from './gpt.js';
import {
  backupOffsetFor, decodeSuperblock, differingCopies, FLAG_BACKUP_COPY, PRIMARY_OFFSET, SUPERBLOCK_BYTES,
  type DecodeVerdict, type Superblock,
} from './superblock.js';
import { hex, hexRange, HUGE_PAGE_BYTES, humanSize, isAligned, PAGE_BYTES, rangesOverlap } from './units.js';
import { xenMinimumReservedPages, XEN_X86_64_COSTS } from './xen-sizing.js';

export type ReasonCode =
  | 'short-read' | 'bad-checksum' | 'unsupported-major-version' | 'bad-header-size' | 'unknown-flags'
  | 'nonzero-padding' | 'bad-uuid' | 'bad-writer'
  | 'misplaced-copy' | 'copies-disagree'
  | 'device-size-mismatch' | 'namespace-mismatch' | 'unsupported-page-size' | 'costs-below-xen'
  | 'misaligned' | 'area-empty' | 'area-outside-device' | 'areas-overlap'
  | 'partition-table-missing' | 'partition-table-not-gpt' | 'partition-table-invalid'
  | 'superblock-overlaps-partition-table' | 'reserved-overlaps-partition-table'
  | 'data-overlaps-partition-table' | 'area-overlaps-superblock'
  | 'superblock-inside-partition' | 'reserved-overlaps-partition' | 'partition-outside-data-area'
  | 'reserved-too-small';

export type TableInput =
  | { kind: 'gpt'; table: GptTable }
  | { kind: 'none' }
  | { kind: 'mbr' }
  | { kind: 'invalid'; message: string };

export interface ProbeInput {
  deviceSize: bigint;
  table: TableInput;
  /** Bytes at PRIMARY_OFFSET (may be short if the device is tiny). */
  primary: Uint8Array;
  /** Bytes at backupOffsetFor(deviceSize), or null when the device has no room for one. */
  backup: Uint8Array | null;
  /** The pmem namespace's UUID when known (the daemon knows it; a file has none). */
  namespaceUuid?: string | null;
}

export type CopyName = 'primary' | 'backup';

export type Verdict =
  | { status: 'absent'; message: string; partitions: GptPartition[] }
  | { status: 'invalid'; reason: ReasonCode; message: string; superblock?: Superblock; partitions: GptPartition[] }
  | {
    status: 'valid';
    superblock: Superblock;
    /** Which copy was used. */
    source: CopyName;
    /** Things an operator should know that do not make the device invalid, e.g. a damaged copy. */
    notes: string[];
    table: GptTable;
    partitions: GptPartition[];
  };

export function judge(input: ProbeInput): Verdict {
  const partitions = input.table.kind === 'gpt' ? input.table.table.partitions : [];
  const backupAt = backupOffsetFor(input.deviceSize);
  const primary = checkCopy(decodeSuperblock(input.primary), 'primary');
  const backup: CopyVerdict = input.backup === null ? { kind: 'absent' } : checkCopy(decodeSuperblock(input.backup), 'backup');
  const where = { primary: hex(PRIMARY_OFFSET), backup: hex(backupAt) };

  if (primary.kind === 'absent' && backup.kind === 'absent') {
    const places = input.backup === null ? where.primary : `${where.primary} or ${where.backup}`;
    return { status: 'absent', message: `no xen-pmem super block at ${places}`, partitions };
  }
  if (primary.kind !== 'ok' && backup.kind !== 'ok') {
    const first = primary.kind === 'damaged' ? primary : backup as Extract<CopyVerdict, { kind: 'damaged' }>;
    return {
      status: 'invalid', reason: first.reason, partitions,
      message: `primary super block at ${where.primary}: ${describeCopy(primary)}; backup at ${where.backup}: ${describeCopy(backup)}`,
    };
  }

  const notes: string[] = [];
  let chosen: Superblock;
  let source: CopyName;
  if (primary.kind === 'ok' && backup.kind === 'ok') {
    const differences = differingCopies(primary, backup);
    if (differences.length > 0) {
      return {
        status: 'invalid', reason: 'copies-disagree', partitions,
        message: `primary (reservation ${primary.superblock.uuid}) and backup (reservation ${backup.superblock.uuid}) disagree on ${differences.join(', ')}; neither is used, because only one setup wrote both and a stale or forged copy cannot be told from the right one`,
      };
    }
    chosen = primary.superblock;
    source = 'primary';
  } else if (primary.kind === 'ok') {
    chosen = primary.superblock;
    source = 'primary';
    notes.push(`backup super block at ${where.backup} ${backup.kind === 'absent' ? 'is missing' : `is damaged (${describeCopy(backup)})`}; the primary at ${where.primary} is used`);
  } else {
    chosen = (backup as Extract<CopyVerdict, { kind: 'ok' }>).superblock;
    source = 'backup';
    notes.push(`primary super block at ${where.primary} ${primary.kind === 'absent' ? 'is missing' : `is damaged (${describeCopy(primary)})`}; the backup at ${where.backup} is used`);
  }

  const failure = checkAgainstDevice(chosen, input);
  if (failure) return { status: 'invalid', ...failure, superblock: chosen, partitions };
  const table = (input.table as Extract<TableInput, { kind: 'gpt' }>).table;
  if (chosen.namespaceUuid !== null && input.namespaceUuid === undefined) {
    notes.push(`bound to pmem namespace ${chosen.namespaceUuid}; not checked here because the device is not a pmem namespace`);
  }
  return { status: 'valid', superblock: chosen, source, notes, table, partitions };
}

type CopyVerdict =
  | Extract<DecodeVerdict, { kind: 'ok' }>
  | { kind: 'absent' }
  | { kind: 'damaged'; reason: ReasonCode; message: string };

/** Decoding plus what a copy says about itself: where it claims to live must be where it was found. */
function checkCopy(decoded: DecodeVerdict, name: CopyName): CopyVerdict {
  if (decoded.kind !== 'ok') return decoded;
  const sb = decoded.superblock;
  const isBackup = (sb.flags & FLAG_BACKUP_COPY) !== 0;
  if (isBackup !== (name === 'backup')) {
    return { kind: 'damaged', reason: 'misplaced-copy', message: `a ${isBackup ? 'backup' : 'primary'} copy was found where the ${name} belongs` };
  }
  if (sb.primaryOffset !== PRIMARY_OFFSET || sb.backupOffset !== backupOffsetFor(sb.deviceSize)) {
    return {
      kind: 'damaged', reason: 'misplaced-copy',
      message: `it records copies at ${hex(sb.primaryOffset)} and ${hex(sb.backupOffset)}, but a device of ${sb.deviceSize} bytes keeps them at ${hex(PRIMARY_OFFSET)} and ${hex(backupOffsetFor(sb.deviceSize))}`,
    };
  }
  return decoded;
}

function describeCopy(copy: CopyVerdict): string {
  if (copy.kind === 'absent') return 'none';
  if (copy.kind === 'damaged') return `${copy.reason}: ${copy.message}`;
  return 'valid';
}

interface Failure { reason: ReasonCode; message: string }

interface Range { start: bigint; end: bigint; what: string }

function checkAgainstDevice(sb: Superblock, input: ProbeInput): Failure | null {
  const size = input.deviceSize;
  if (sb.deviceSize !== size) {
    return fail('device-size-mismatch',
      `the super block was written for a device of ${sb.deviceSize} bytes (${humanSize(sb.deviceSize)}) but this device has ${size} bytes (${humanSize(size)})`);
  }
  if (sb.namespaceUuid !== null && input.namespaceUuid !== undefined && sb.namespaceUuid !== input.namespaceUuid) {
    return fail('namespace-mismatch',
      `the super block is bound to pmem namespace ${sb.namespaceUuid} but this device is namespace ${input.namespaceUuid ?? '(no UUID)'}`);
  }
  if (BigInt(sb.pageSize) !== PAGE_BYTES) {
    return fail('unsupported-page-size', `the layout was sized for ${sb.pageSize}-byte pages; Xen on x86-64 uses 4096`);
  }
  const x = XEN_X86_64_COSTS;
  if (sb.pageInfoBytes < x.pageInfoBytes || sb.m2pBytes < x.m2pBytes || sb.compatM2pBytes < x.compatM2pBytes) {
    return fail('costs-below-xen',
      `the layout was sized with ${sb.pageInfoBytes}/${sb.m2pBytes}/${sb.compatM2pBytes} bytes per page (page_info/M2P/compat M2P); Xen needs ${x.pageInfoBytes}/${x.m2pBytes}/${x.compatM2pBytes}`);
  }
  for (const [name, value, alignment] of [
    ['device size', size, PAGE_BYTES],
    ['reserved area offset', sb.reservedOffset, HUGE_PAGE_BYTES],
    ['reserved area size', sb.reservedSize, PAGE_BYTES],
    ['data area offset', sb.dataOffset, HUGE_PAGE_BYTES],
    ['data area size', sb.dataSize, PAGE_BYTES],
  ] as const) {
    if (!isAligned(value, alignment)) {
      return fail('misaligned', `${name} ${hex(value)} is not a multiple of ${humanSize(alignment)}`);
    }
  }
  if (sb.reservedSize === 0n) return fail('area-empty', 'the reserved area is empty');
  if (sb.dataSize === 0n) return fail('area-empty', 'the data area is empty');
  const reserved: Range = { start: sb.reservedOffset, end: sb.reservedOffset + sb.reservedSize, what: 'reserved area' };
  const data: Range = { start: sb.dataOffset, end: sb.dataOffset + sb.dataSize, what: 'data area' };
  for (const area of [reserved, data]) {
    if (area.end > size) {
      return fail('area-outside-device', `the ${area.what} ${show(area)} ends past the device's last byte ${hex(size - 1n)}`);
    }
  }
  if (overlaps(reserved, data)) return fail('areas-overlap', `the reserved area ${show(reserved)} and the data area ${show(data)} overlap`);

  if (input.table.kind === 'none') return fail('partition-table-missing', 'the device has a super block but no partition table');
  if (input.table.kind === 'mbr') return fail('partition-table-not-gpt', 'the device has an MBR partition table; xen-pmem layouts use GPT');
  if (input.table.kind === 'invalid') return fail('partition-table-invalid', input.table.message);
  const table = input.table.table;
  const tableAreas: Range[] = [
    { start: 0n, end: table.entriesOffset + BigInt(table.entriesBytes), what: 'primary GPT' },
    { start: (table.alternateLba * BigInt(table.sectorSize)) - BigInt(table.entriesBytes), end: size, what: 'backup GPT' },
  ];
  const copies: Range[] = [
    { start: PRIMARY_OFFSET, end: PRIMARY_OFFSET + BigInt(SUPERBLOCK_BYTES), what: 'primary super block' },
    { start: sb.backupOffset, end: sb.backupOffset + BigInt(SUPERBLOCK_BYTES), what: 'backup super block' },
  ];
  for (const copy of copies) {
    const hit = tableAreas.find((area) => overlaps(copy, area));
    if (hit) return fail('superblock-overlaps-partition-table', `the ${copy.what} ${show(copy)} overlaps the ${hit.what} ${show(hit)}`);
  }
  const tableHit = tableAreas.find((area) => overlaps(reserved, area));
  if (tableHit) return fail('reserved-overlaps-partition-table', `the reserved area ${show(reserved)} overlaps the ${tableHit.what} ${show(tableHit)}`);
  // Xen takes the reserved pages for itself and hands the data pages to guests: neither may hold
  // the partition table or a super block copy, or a guest (or Xen) would overwrite them.
  const dataTableHit = tableAreas.find((area) => overlaps(data, area));
  if (dataTableHit) return fail('data-overlaps-partition-table', `the data area ${show(data)} overlaps the ${dataTableHit.what} ${show(dataTableHit)}`);
  for (const area of [reserved, data]) {
    const copy = copies.find((c) => overlaps(c, area));
    if (copy) return fail('area-overlaps-superblock', `the ${area.what} ${show(area)} covers the ${copy.what} at ${hex(copy.start)}`);
  }
  for (const partition of table.partitions) {
    const range: Range = { start: partition.start, end: partition.start + partition.size, what: `partition ${partition.number}` };
    const copy = copies.find((c) => overlaps(c, range));
    if (copy) return fail('superblock-inside-partition', `${range.what} ${show(range)} covers the ${copy.what} at ${hex(copy.start)}`);
    if (overlaps(reserved, range)) return fail('reserved-overlaps-partition', `${range.what} ${show(range)} overlaps the reserved area ${show(reserved)}`);
    if (range.start < data.start || range.end > data.end) {
      return fail('partition-outside-data-area', `${range.what} ${show(range)} is not inside the data area ${show(data)}`);
    }
  }

  const totalPages = size / PAGE_BYTES;
  const reservedPages = sb.reservedSize / PAGE_BYTES;
  const xenPages = xenMinimumReservedPages(totalPages);
  if (reservedPages < xenPages) {
    return fail('reserved-too-small',
      `the reserved area holds ${reservedPages} pages (${humanSize(sb.reservedSize)}) but Xen needs at least ${xenPages} pages (${humanSize(xenPages * PAGE_BYTES)}) for a device of ${totalPages} pages`);
  }
  const recordedNeed = totalPages * BigInt(sb.pageInfoBytes + sb.m2pBytes + sb.compatM2pBytes);
  if (sb.reservedSize < recordedNeed) {
    return fail('reserved-too-small',
      `the reserved area holds ${humanSize(sb.reservedSize)} but the per-page costs it records need ${humanSize(recordedNeed)} for ${totalPages} pages`);
  }
  return null;
}

function fail(reason: ReasonCode, message: string): Failure {
  return { reason, message };
}

function overlaps(a: Range, b: Range): boolean {
  return rangesOverlap(a.start, a.end, b.start, b.end);
}

function show(range: Range): string {
  return hexRange(range.start, range.end - range.start);
}
