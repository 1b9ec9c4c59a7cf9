// The fuzzer's oracle: docs/superblock.md restated from the raw bytes of a device, without the
// project's codec, GPT reader or validator (and with a CRC-32 of its own). It answers only
// "valid", "absent" or "invalid", with a phrase for the log; which reason the validator picks is
// the hostile corpus's business. A mutant the validator accepts must be valid here too.
//
// Written as a list of facts and then a list of rules over them, on purpose unlike the validator's
// step-by-step code, so that one mistake is unlikely to be made twice.

import { crc32, GPT_ENTRY, GPT_HEADER, MBR_BOOT_SIGNATURE_OFFSET, MBR_PARTITION_TABLE_OFFSET, MBR_TYPE_GPT_PROTECTIVE } from './forge.js';

export interface ByteSource {
  size: bigint;
  sectorSize: number;
  readSync(offset: bigint, length: number): Uint8Array;
}

export type OracleVerdict = { status: 'valid' | 'absent' | 'invalid'; why: string };

const KIB = 1024n;
const MIB = 1024n * KIB;
const PAGE = 4096n;
const SUPERPAGE = 2n * MIB;
const BLOCK = 4096;
const PRIMARY_AT = MIB;
const MAGIC = 'XEN-PMEM-SUPERBL';
const HEADER_V1_0 = 192;
const ENTRY_ARRAY_LIMIT = 64n * KIB;

interface Copy {
  bytes: Buffer;
  minor: number;
  flags: number;
  namespaceUuid: string | null;
  deviceSize: bigint;
  reservedOffset: bigint;
  reservedSize: bigint;
  dataOffset: bigint;
  dataSize: bigint;
  backupOffset: bigint;
  pageSize: number;
  costs: [number, number, number];
}

type CopyFinding = { found: false } | { found: true; copy: Copy | null; why: string };

/** The backup copy's place for a device (or a recorded device size) of `bytes` bytes. */
function backupPlace(bytes: bigint): bigint {
  return bytes - (bytes % PAGE) - MIB;
}

function allZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

function hexId(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

function writerIsText(field: Buffer): boolean {
  const nul = field.indexOf(0);
  if (nul < 0 || !allZero(field.subarray(nul))) return false;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(field.subarray(0, nul));
  } catch {
    return false;
  }
  // C0 controls and DEL are not text a log line may carry. U+FFFD is refused as well: it is what
  // a lossy decoder leaves for bytes that were not text, so a block cannot be told from one.
  return !/[\u0000-\u001f\u007f\ufffd]/u.test(text);
}

function readCopy(device: ByteSource, at: bigint, role: 'primary' | 'backup'): CopyFinding {
  const bytes = Buffer.from(device.readSync(at, BLOCK));
  if (bytes.length < MAGIC.length || bytes.subarray(0, MAGIC.length).toString('latin1') !== MAGIC) return { found: false };
  const bad = (why: string): CopyFinding => ({ found: true, copy: null, why: `${role}: ${why}` });
  if (bytes.length !== BLOCK) return bad('cut short');
  const zeroed = Buffer.from(bytes);
  zeroed.fill(0, 24, 28);
  if (crc32(zeroed) !== bytes.readUInt32LE(24)) return bad('checksum');
  if (bytes.readUInt16LE(16) !== 1) return bad('major version');
  const minor = bytes.readUInt16LE(18);
  const header = bytes.readUInt32LE(28);
  const headerOk = minor === 0 ? header === HEADER_V1_0 : header >= HEADER_V1_0 && header <= BLOCK;
  if (!headerOk) return bad('header size');
  const flags = bytes.readUInt32LE(20);
  if (minor === 0 && flags > 3) return bad('flags');
  if (!allZero(bytes.subarray(header))) return bad('padding');
  if (allZero(bytes.subarray(32, 48))) return bad('zero UUID');
  const bound = (flags & 2) !== 0;
  const namespaceBytes = bytes.subarray(48, 64);
  if (bound === allZero(namespaceBytes)) return bad('binding');
  if (!writerIsText(bytes.subarray(144, 192))) return bad('writer');
  if (((flags & 1) !== 0) !== (role === 'backup')) return bad('wrong role');
  const deviceSize = bytes.readBigUInt64LE(64);
  if (bytes.readBigUInt64LE(104) !== PRIMARY_AT || bytes.readBigUInt64LE(112) !== backupPlace(deviceSize)) return bad('recorded places');
  return {
    found: true,
    why: `${role}: ok`,
    copy: {
      bytes, minor, flags,
      namespaceUuid: bound ? hexId(namespaceBytes) : null,
      deviceSize,
      reservedOffset: bytes.readBigUInt64LE(72),
      reservedSize: bytes.readBigUInt64LE(80),
      dataOffset: bytes.readBigUInt64LE(88),
      dataSize: bytes.readBigUInt64LE(96),
      backupOffset: bytes.readBigUInt64LE(112),
      pageSize: bytes.readUInt32LE(128),
      costs: [bytes.readUInt32LE(132), bytes.readUInt32LE(136), bytes.readUInt32LE(140)],
    },
  };
}

/** The two copies agree when every byte is equal except the checksum and the backup flag. */
function copiesAgree(a: Buffer, b: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 24 && i < 28) continue;
    const mask = i === 20 ? 0xfe : 0xff;
    if ((a[i]! & mask) !== (b[i]! & mask)) return false;
  }
  return true;
}

interface Span { from: bigint; to: bigint }

type Table =
  | { kind: 'gpt'; tableSpans: Span[]; usable: Span; partitions: Span[] }
  | { kind: 'none' | 'mbr' | 'broken'; why: string };

function readTable(device: ByteSource): Table {
  const s = device.sectorSize;
  const sector = BigInt(s);
  const start = Buffer.from(device.readSync(0n, 2 * s));
  if (start.length < 2 * s) return { kind: 'broken', why: 'device shorter than two sectors' };
  const bootSignature = start.readUInt16LE(MBR_BOOT_SIGNATURE_OFFSET) === 0xaa55;
  const h = start.subarray(s, 2 * s);
  if (h.subarray(0, 8).toString('latin1') !== 'EFI PART') return { kind: bootSignature ? 'mbr' : 'none', why: 'no GPT signature' };
  if (bootSignature) {
    let protective = false;
    for (let slot = 0; slot < 4; slot++) if (start[MBR_PARTITION_TABLE_OFFSET + 16 * slot + 4] === MBR_TYPE_GPT_PROTECTIVE) protective = true;
    if (!protective) return { kind: 'mbr', why: 'MBR without a protective entry' };
  }
  const headerSize = h.readUInt32LE(GPT_HEADER.headerSize);
  if (headerSize < 92 || headerSize > s) return { kind: 'broken', why: 'header size' };
  const sealed = Buffer.from(h.subarray(0, headerSize));
  sealed.fill(0, GPT_HEADER.headerCrc, GPT_HEADER.headerCrc + 4);
  if (crc32(sealed) !== h.readUInt32LE(GPT_HEADER.headerCrc)) return { kind: 'broken', why: 'header CRC' };
  const u64 = (at: number) => h.readBigUInt64LE(at);
  const myLba = u64(GPT_HEADER.myLba);
  const alternate = u64(GPT_HEADER.alternateLba);
  const firstUsable = u64(GPT_HEADER.firstUsableLba);
  const lastUsable = u64(GPT_HEADER.lastUsableLba);
  const entriesLba = u64(GPT_HEADER.entriesLba);
  const count = BigInt(h.readUInt32LE(GPT_HEADER.entryCount));
  const entrySize = BigInt(h.readUInt32LE(GPT_HEADER.entrySize));
  const lastLba = device.size / sector - 1n;
  const arrayBytes = count * entrySize;
  const facts: [boolean, string][] = [
    [myLba === 1n, 'header not at LBA 1'],
    [alternate > 1n && alternate <= lastLba, 'backup header outside the device'],
    [entrySize >= 128n && entrySize % 8n === 0n, 'entry size'],
    [arrayBytes <= ENTRY_ARRAY_LIMIT, 'entry array too large'],
    [entriesLba >= 2n && entriesLba * sector + arrayBytes <= firstUsable * sector, 'entry array in the usable area'],
    [firstUsable <= lastUsable && lastUsable < alternate, 'usable LBAs'],
  ];
  const broken = facts.find(([holds]) => !holds);
  if (broken) return { kind: 'broken', why: broken[1] };
  const entries = Buffer.from(device.readSync(entriesLba * sector, Number(arrayBytes)));
  if (BigInt(entries.length) !== arrayBytes) return { kind: 'broken', why: 'entry array cut short' };
  if (crc32(entries) !== h.readUInt32LE(GPT_HEADER.entriesCrc)) return { kind: 'broken', why: 'entry CRC' };
  const usable: Span = { from: firstUsable * sector, to: (lastUsable + 1n) * sector };
  const partitions: Span[] = [];
  for (let i = 0n; i < count; i++) {
    const entry = entries.subarray(Number(i * entrySize), Number((i + 1n) * entrySize));
    if (allZero(entry.subarray(GPT_ENTRY.typeGuid, GPT_ENTRY.typeGuid + 16))) continue;
    const first = entry.readBigUInt64LE(GPT_ENTRY.firstLba);
    const last = entry.readBigUInt64LE(GPT_ENTRY.lastLba);
    const span: Span = { from: first * sector, to: (last + 1n) * sector };
    if (last < first || span.from < usable.from || span.to > usable.to) return { kind: 'broken', why: `partition ${i + 1n} outside the usable LBAs` };
    partitions.push(span);
  }
  return {
    kind: 'gpt',
    usable,
    partitions,
    tableSpans: [
      { from: 0n, to: entriesLba * sector + arrayBytes },
      { from: alternate * sector - arrayBytes, to: device.size },
    ],
  };
}

function meets(a: Span, b: Span): boolean {
  return a.from < b.to && b.from < a.to;
}

function inside(inner: Span, outer: Span): boolean {
  return inner.from >= outer.from && inner.to <= outer.to;
}

export function oracle(device: ByteSource, namespaceUuid?: string | null): OracleVerdict {
  const backupAt = backupPlace(device.size);
  const primary = readCopy(device, PRIMARY_AT, 'primary');
  const backup: CopyFinding = backupAt > PRIMARY_AT + BigInt(BLOCK) ? readCopy(device, backupAt, 'backup') : { found: false };
  if (!primary.found && !backup.found) return { status: 'absent', why: 'no signature' };
  const usable = [primary, backup].filter((f): f is Extract<CopyFinding, { found: true }> & { copy: Copy } => f.found && f.copy !== null);
  if (usable.length === 0) return { status: 'invalid', why: [primary, backup].map((f) => (f.found ? f.why : 'none')).join('; ') };
  if (usable.length === 2 && !copiesAgree(usable[0]!.copy.bytes, usable[1]!.copy.bytes)) return { status: 'invalid', why: 'copies disagree' };
  const sb = usable[0]!.copy;

  const size = device.size;
  const expectedNamespace = namespaceUuid === undefined ? undefined : namespaceUuid === null ? null : namespaceUuid.replaceAll('-', '');
  const reserved: Span = { from: sb.reservedOffset, to: sb.reservedOffset + sb.reservedSize };
  const data: Span = { from: sb.dataOffset, to: sb.dataOffset + sb.dataSize };
  const copies: Span[] = [
    { from: PRIMARY_AT, to: PRIMARY_AT + BigInt(BLOCK) },
    { from: sb.backupOffset, to: sb.backupOffset + BigInt(BLOCK) },
  ];
  const pages = size / PAGE;
  const [pageInfo, m2p, compat] = sb.costs;
  const rules: [() => boolean, string][] = [
    [() => sb.deviceSize === size, 'written for another size'],
    [() => sb.namespaceUuid === null || expectedNamespace === undefined || sb.namespaceUuid === expectedNamespace, 'bound elsewhere'],
    [() => sb.pageSize === 4096, 'page size'],
    [() => pageInfo >= 32 && m2p >= 8 && compat >= 4, 'costs below Xen'],
    [() => size % PAGE === 0n && sb.reservedOffset % SUPERPAGE === 0n && sb.reservedSize % PAGE === 0n
      && sb.dataOffset % SUPERPAGE === 0n && sb.dataSize % PAGE === 0n, 'alignment'],
    [() => sb.reservedSize > 0n && sb.dataSize > 0n, 'empty area'],
    [() => reserved.to <= size && data.to <= size, 'area past the end'],
    [() => !meets(reserved, data), 'areas overlap'],
  ];
  for (const [holds, why] of rules) if (!holds()) return { status: 'invalid', why };

  const table = readTable(device);
  if (table.kind !== 'gpt') return { status: 'invalid', why: `table: ${table.why}` };
  const tableRules: [() => boolean, string][] = [
    [() => !copies.some((c) => table.tableSpans.some((t) => meets(c, t))), 'copy over the table'],
    [() => !table.tableSpans.some((t) => meets(reserved, t) || meets(data, t)), 'area over the table'],
    [() => !copies.some((c) => meets(c, reserved) || meets(c, data)), 'area over a copy'],
    [() => table.partitions.every((p) => !copies.some((c) => meets(c, p)) && !meets(p, reserved) && inside(p, data)), 'partition out of place'],
    [() => sb.reservedSize / PAGE >= ((32n * pages) >> 12n) + ((8n * pages) >> 12n), 'below rule 4'],
    [() => sb.reservedSize >= pages * BigInt(pageInfo + m2p + compat), 'below recorded costs'],
  ];
  for (const [holds, why] of tableRules) if (!holds()) return { status: 'invalid', why };
  return { status: 'valid', why: 'all rules hold' };
}
