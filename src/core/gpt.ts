// Reads a GUID partition table from bytes. sfdisk writes the table; this side only reads it, to
// learn where partitions are and which part of the device the table keeps free of them, without
// running libblkid (which reads about 1 MB of a large device). Pure: callers supply the bytes.

import CRC32 from 'crc-32';

export const GPT_SIGNATURE = 'EFI PART';
const GPT_HEADER_MIN_BYTES = 92;
const GPT_ENTRY_MIN_BYTES = 128;
/** More than any sane table (128 entries of 128 bytes is 16 KiB); caps what a probe reads. */
export const GPT_ENTRIES_MAX_BYTES = 64 * 1024;
const MBR_SIGNATURE_OFFSET = 510;
const MBR_PARTITIONS_OFFSET = 446;
const MBR_TYPE_PROTECTIVE = 0xee;

export interface GptHeader {
  sectorSize: number;
  /** LBA of the backup header, from the primary header. */
  alternateLba: bigint;
  /** First byte partitions may use. */
  firstUsableByte: bigint;
  /** One past the last byte partitions may use. */
  usableEndByte: bigint;
  entriesOffset: bigint;
  entriesBytes: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
  diskGuid: string;
}

export interface GptPartition {
  /** 1-based, as the kernel numbers pmem0p1. */
  number: number;
  start: bigint;
  size: bigint;
  typeGuid: string;
  name: string;
}

export interface GptTable extends GptHeader {
  partitions: GptPartition[];
}

export type HeaderVerdict =
  | { kind: 'gpt'; header: GptHeader }
  | { kind: 'none' }
  /** An MBR that does not protect a GPT: a foreign layout we will not reason about. */
  | { kind: 'mbr' }
  | { kind: 'invalid'; message: string };

/**
 * Reads the protective MBR (LBA 0) and primary GPT header (LBA 1) from the first two sectors.
 * `deviceSize` bounds every LBA the header names.
 */
export function parseGptHeader(firstSectors: Uint8Array, sectorSize: number, deviceSize: bigint): HeaderVerdict {
  const bytes = Buffer.from(firstSectors.buffer, firstSectors.byteOffset, firstSectors.byteLength);
  if (bytes.length < 2 * sectorSize) return { kind: 'invalid', message: `only ${bytes.length} bytes could be read from the start of the device` };
  const hasMbr = bytes.readUInt16LE(MBR_SIGNATURE_OFFSET) === 0xaa55;
  const headerBytes = bytes.subarray(sectorSize, 2 * sectorSize);
  const hasGpt = headerBytes.subarray(0, 8).toString('latin1') === GPT_SIGNATURE;
  if (!hasGpt) {
    if (!hasMbr) return { kind: 'none' };
    return { kind: 'mbr' };
  }
  if (hasMbr && !mbrProtectsGpt(bytes)) return { kind: 'mbr' };

  const headerSize = headerBytes.readUInt32LE(12);
  if (headerSize < GPT_HEADER_MIN_BYTES || headerSize > sectorSize) {
    return { kind: 'invalid', message: `GPT header size ${headerSize} is outside ${GPT_HEADER_MIN_BYTES}..${sectorSize}` };
  }
  const storedCrc = headerBytes.readUInt32LE(16);
  const header = Buffer.from(headerBytes.subarray(0, headerSize));
  header.writeUInt32LE(0, 16);
  const computedCrc = CRC32.buf(header) >>> 0;
  if (storedCrc !== computedCrc) {
    return { kind: 'invalid', message: `GPT header checksum is 0x${storedCrc.toString(16)} but the header sums to 0x${computedCrc.toString(16)}` };
  }
  const sector = BigInt(sectorSize);
  const lastLba = deviceSize / sector - 1n;
  const myLba = headerBytes.readBigUInt64LE(24);
  const alternateLba = headerBytes.readBigUInt64LE(32);
  const firstUsable = headerBytes.readBigUInt64LE(40);
  const lastUsable = headerBytes.readBigUInt64LE(48);
  const entriesLba = headerBytes.readBigUInt64LE(72);
  const entryCount = headerBytes.readUInt32LE(80);
  const entrySize = headerBytes.readUInt32LE(84);
  const entriesCrc = headerBytes.readUInt32LE(88);
  if (myLba !== 1n) return { kind: 'invalid', message: `GPT header says it is at LBA ${myLba}, not 1` };
  if (alternateLba > lastLba || alternateLba <= 1n) {
    return { kind: 'invalid', message: `GPT backup header LBA ${alternateLba} is outside the device (last LBA ${lastLba})` };
  }
  if (entrySize < GPT_ENTRY_MIN_BYTES || entrySize % 8 !== 0) {
    return { kind: 'invalid', message: `GPT entry size ${entrySize} is not a multiple of 8 of at least ${GPT_ENTRY_MIN_BYTES}` };
  }
  const entriesBytes = BigInt(entryCount) * BigInt(entrySize);
  if (entriesBytes > BigInt(GPT_ENTRIES_MAX_BYTES)) {
    return { kind: 'invalid', message: `GPT entry array of ${entriesBytes} bytes is larger than the ${GPT_ENTRIES_MAX_BYTES} this tool reads` };
  }
  const entriesOffset = entriesLba * sector;
  if (entriesLba < 2n || entriesOffset + entriesBytes > firstUsable * sector) {
    return { kind: 'invalid', message: `GPT entry array at LBA ${entriesLba} runs into the usable area starting at LBA ${firstUsable}` };
  }
  if (firstUsable > lastUsable || lastUsable >= alternateLba) {
    return { kind: 'invalid', message: `GPT usable LBAs ${firstUsable}..${lastUsable} are impossible before the backup header at LBA ${alternateLba}` };
  }
  return {
    kind: 'gpt',
    header: {
      sectorSize,
      alternateLba,
      firstUsableByte: firstUsable * sector,
      usableEndByte: (lastUsable + 1n) * sector,
      entriesOffset,
      entriesBytes: Number(entriesBytes),
      entryCount,
      entrySize,
      entriesCrc,
      diskGuid: readGuid(headerBytes, 56),
    },
  };
}

export type EntriesVerdict = { kind: 'gpt'; table: GptTable } | { kind: 'invalid'; message: string };

export function parseGptEntries(header: GptHeader, entries: Uint8Array): EntriesVerdict {
  if (entries.length < header.entriesBytes) {
    return { kind: 'invalid', message: `only ${entries.length} of ${header.entriesBytes} GPT entry bytes could be read` };
  }
  const bytes = Buffer.from(entries.buffer, entries.byteOffset, header.entriesBytes);
  const computed = CRC32.buf(bytes) >>> 0;
  if (computed !== header.entriesCrc) {
    return { kind: 'invalid', message: `GPT entry array checksum is 0x${header.entriesCrc.toString(16)} but the entries sum to 0x${computed.toString(16)}` };
  }
  const sector = BigInt(header.sectorSize);
  const partitions: GptPartition[] = [];
  for (let index = 0; index < header.entryCount; index++) {
    const entry = bytes.subarray(index * header.entrySize, (index + 1) * header.entrySize);
    // Most of the 128 entries are unused (all-zero type); skip them before formatting anything.
    if (isZero(entry.subarray(0, 16))) continue;
    const typeGuid = readGuid(entry, 0);
    const firstLba = entry.readBigUInt64LE(32);
    const lastLba = entry.readBigUInt64LE(40);
    const start = firstLba * sector;
    const end = (lastLba + 1n) * sector;
    if (lastLba < firstLba || start < header.firstUsableByte || end > header.usableEndByte) {
      return { kind: 'invalid', message: `GPT partition ${index + 1} (LBA ${firstLba}..${lastLba}) lies outside the usable LBAs` };
    }
    partitions.push({ number: index + 1, start, size: end - start, typeGuid, name: readName(entry) });
  }
  return { kind: 'gpt', table: { ...header, partitions } };
}

function isZero(bytes: Buffer): boolean {
  for (const byte of bytes) if (byte !== 0) return false;
  return true;
}

function mbrProtectsGpt(bytes: Buffer): boolean {
  for (let slot = 0; slot < 4; slot++) {
    if (bytes[MBR_PARTITIONS_OFFSET + slot * 16 + 4] === MBR_TYPE_PROTECTIVE) return true;
  }
  return false;
}

/** GUIDs are stored mixed-endian: the first three groups little-endian. */
function readGuid(bytes: Buffer, offset: number): string {
  const b = bytes.subarray(offset, offset + 16);
  const le = (start: number, length: number) => Buffer.from(b.subarray(start, start + length)).reverse().toString('hex');
  return `${le(0, 4)}-${le(4, 2)}-${le(6, 2)}-${b.subarray(8, 10).toString('hex')}-${b.subarray(10, 16).toString('hex')}`;
}

function readName(entry: Buffer): string {
  const raw = entry.subarray(56, 56 + 72);
  let end = 0;
  while (end + 1 < raw.length && (raw[end] !== 0 || raw[end + 1] !== 0)) end += 2;
  return raw.subarray(0, end).toString('utf16le');
}
