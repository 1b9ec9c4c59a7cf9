// The on-disk super block, format v1. This module is the specification: docs/superblock.md mirrors
// the FIELDS table below, and test/superblock.test.ts asserts every offset. The reader and the
// writer both go through FIELDS, so they cannot drift apart.
//
// Decoding never throws and trusts nothing: the signature is checked first (so that "no super
// block here" and "a damaged one" are different verdicts), then the checksum over the whole block,
// then the major version, and only then are fields read. Range checks that need the device
// (sizes, overlaps, Xen's rule) live in validate.ts.

import CRC32 from 'crc-32';
import { KiB, MiB } from './units.js';
import { isCanonicalUuid, NIL_UUID as ZERO_UUID } from './uuid.js';

/** A whole block: one 4 KiB page, so it never straddles a page of the pmem. */
export const SUPERBLOCK_BYTES = 4096;
export const SIGNATURE = 'XEN-PMEM-SUPERBL';
export const MAJOR_VERSION = 1;
export const MINOR_VERSION = 0;

/** The primary copy sits in the gap after the GPT entries and before the reserved area. */
export const PRIMARY_OFFSET = 1n * MiB;
/** The backup sits this far before the (4 KiB-aligned) end of the device, clear of the backup GPT. */
export const BACKUP_DISTANCE_FROM_END = 1n * MiB;

export const FLAG_BACKUP_COPY = 1 << 0;
/** Set when setup knew the pmem namespace UUID and bound the reservation to it. */
export const FLAG_NAMESPACE_BOUND = 1 << 1;
const KNOWN_FLAGS = FLAG_BACKUP_COPY | FLAG_NAMESPACE_BOUND;

type FieldKind = 'bytes' | 'u16' | 'u32' | 'u64' | 'uuid' | 'text';
interface FieldSpec {
  offset: number;
  size: number;
  kind: FieldKind;
}

/** Byte layout of v1.0. Little-endian throughout. Offsets relative to the start of the block. */
export const FIELDS = {
  signature: { offset: 0, size: 16, kind: 'bytes' },
  majorVersion: { offset: 16, size: 2, kind: 'u16' },
  minorVersion: { offset: 18, size: 2, kind: 'u16' },
  flags: { offset: 20, size: 4, kind: 'u32' },
  checksum: { offset: 24, size: 4, kind: 'u32' },
  headerBytes: { offset: 28, size: 4, kind: 'u32' },
  uuid: { offset: 32, size: 16, kind: 'uuid' },
  namespaceUuid: { offset: 48, size: 16, kind: 'uuid' },
  deviceSize: { offset: 64, size: 8, kind: 'u64' },
  reservedOffset: { offset: 72, size: 8, kind: 'u64' },
  reservedSize: { offset: 80, size: 8, kind: 'u64' },
  dataOffset: { offset: 88, size: 8, kind: 'u64' },
  dataSize: { offset: 96, size: 8, kind: 'u64' },
  primaryOffset: { offset: 104, size: 8, kind: 'u64' },
  backupOffset: { offset: 112, size: 8, kind: 'u64' },
  createdAt: { offset: 120, size: 8, kind: 'u64' },
  pageSize: { offset: 128, size: 4, kind: 'u32' },
  pageInfoBytes: { offset: 132, size: 4, kind: 'u32' },
  m2pBytes: { offset: 136, size: 4, kind: 'u32' },
  compatM2pBytes: { offset: 140, size: 4, kind: 'u32' },
  writer: { offset: 144, size: 48, kind: 'text' },
} as const satisfies Record<string, FieldSpec>;

/** Bytes of the block that v1.0 gives meaning to; the rest must be zero in v1.0. */
export const HEADER_BYTES_V1_0 = 192;

export interface Superblock {
  majorVersion: number;
  minorVersion: number;
  flags: number;
  /** UUID of this reservation, lower-case with dashes. */
  uuid: string;
  /** Namespace the reservation is bound to, or null (FLAG_NAMESPACE_BOUND clear). */
  namespaceUuid: string | null;
  deviceSize: bigint;
  reservedOffset: bigint;
  reservedSize: bigint;
  dataOffset: bigint;
  dataSize: bigint;
  primaryOffset: bigint;
  backupOffset: bigint;
  /** Seconds since the epoch when setup wrote it. */
  createdAt: bigint;
  pageSize: number;
  pageInfoBytes: number;
  m2pBytes: number;
  compatM2pBytes: number;
  /** Name and version of the tool that wrote it, e.g. "xen-pmem 0.1.0". */
  writer: string;
}

export type DecodeVerdict =
  | { kind: 'ok'; superblock: Superblock }
  /** No signature: nothing of ours was ever here (or it was wiped). */
  | { kind: 'absent' }
  | { kind: 'damaged'; reason: DecodeFailure; message: string };

export type DecodeFailure =
  | 'short-read'
  | 'bad-checksum'
  | 'unsupported-major-version'
  | 'bad-header-size'
  | 'unknown-flags'
  | 'nonzero-padding'
  | 'bad-uuid'
  | 'bad-writer';


/** CRC-32 (IEEE, as zlib) of the block with the checksum field taken as zero. */
export function superblockChecksum(block: Uint8Array): number {
  const copy = Buffer.from(block.subarray(0, SUPERBLOCK_BYTES));
  copy.writeUInt32LE(0, FIELDS.checksum.offset);
  return CRC32.buf(copy) >>> 0;
}

export function encodeSuperblock(sb: Superblock): Buffer {
  const block = Buffer.alloc(SUPERBLOCK_BYTES);
  block.write(SIGNATURE, FIELDS.signature.offset, 'latin1');
  block.writeUInt16LE(sb.majorVersion, FIELDS.majorVersion.offset);
  block.writeUInt16LE(sb.minorVersion, FIELDS.minorVersion.offset);
  block.writeUInt32LE(sb.flags >>> 0, FIELDS.flags.offset);
  block.writeUInt32LE(HEADER_BYTES_V1_0, FIELDS.headerBytes.offset);
  writeUuid(block, FIELDS.uuid.offset, sb.uuid);
  writeUuid(block, FIELDS.namespaceUuid.offset, sb.namespaceUuid ?? ZERO_UUID);
  for (const name of U64_FIELDS) block.writeBigUInt64LE(sb[name], FIELDS[name].offset);
  for (const name of U32_COST_FIELDS) block.writeUInt32LE(sb[name], FIELDS[name].offset);
  utf8Prefix(sb.writer, FIELDS.writer.size - 1).copy(block, FIELDS.writer.offset);
  // Checksum last, over everything else, as the kernel's pfn info block does.
  block.writeUInt32LE(superblockChecksum(block), FIELDS.checksum.offset);
  return block;
}

const U64_FIELDS = [
  'deviceSize', 'reservedOffset', 'reservedSize', 'dataOffset', 'dataSize',
  'primaryOffset', 'backupOffset', 'createdAt',
] as const;
const U32_COST_FIELDS = ['pageSize', 'pageInfoBytes', 'm2pBytes', 'compatM2pBytes'] as const;

export function hasSignature(block: Uint8Array): boolean {
  if (block.length < FIELDS.signature.size) return false;
  return Buffer.from(block.subarray(0, FIELDS.signature.size)).toString('latin1') === SIGNATURE;
}

export function decodeSuperblock(bytes: Uint8Array): DecodeVerdict {
  if (!hasSignature(bytes)) return { kind: 'absent' };
  if (bytes.length < SUPERBLOCK_BYTES) {
    return damaged('short-read', `only ${bytes.length} of ${SUPERBLOCK_BYTES} bytes could be read`);
  }
  const block = Buffer.from(bytes.buffer, bytes.byteOffset, SUPERBLOCK_BYTES);
  const stored = block.readUInt32LE(FIELDS.checksum.offset);
  const computed = superblockChecksum(block);
  if (stored !== computed) {
    return damaged('bad-checksum',
      `checksum is 0x${hex32(stored)} but the block sums to 0x${hex32(computed)}`);
  }
  const majorVersion = block.readUInt16LE(FIELDS.majorVersion.offset);
  if (majorVersion !== MAJOR_VERSION) {
    return damaged('unsupported-major-version',
      `format version ${majorVersion}.x is not understood by this version (it reads ${MAJOR_VERSION}.x)`);
  }
  const minorVersion = block.readUInt16LE(FIELDS.minorVersion.offset);
  const headerBytes = block.readUInt32LE(FIELDS.headerBytes.offset);
  // Later minor versions may add fields after v1.0's; they must declare them in headerBytes.
  if (headerBytes < HEADER_BYTES_V1_0 || headerBytes > SUPERBLOCK_BYTES
      || (minorVersion === MINOR_VERSION && headerBytes !== HEADER_BYTES_V1_0)) {
    return damaged('bad-header-size',
      `header size ${headerBytes} is impossible for version ${majorVersion}.${minorVersion}`);
  }
  const flags = block.readUInt32LE(FIELDS.flags.offset);
  if (minorVersion === MINOR_VERSION && (flags & ~KNOWN_FLAGS) !== 0) {
    return damaged('unknown-flags', `flags 0x${hex32(flags)} include bits this version does not define`);
  }
  const paddingStart = headerBytes;
  const firstNonZero = block.subarray(paddingStart).findIndex((byte) => byte !== 0);
  if (firstNonZero !== -1) {
    return damaged('nonzero-padding',
      `byte ${paddingStart + firstNonZero} is past the ${headerBytes}-byte header and must be zero`);
  }
  const uuid = readUuid(block, FIELDS.uuid.offset);
  if (uuid === ZERO_UUID) return damaged('bad-uuid', 'the reservation UUID is all zero');
  const namespaceUuid = readUuid(block, FIELDS.namespaceUuid.offset);
  const bound = (flags & FLAG_NAMESPACE_BOUND) !== 0;
  if (bound === (namespaceUuid === ZERO_UUID)) {
    return damaged('bad-uuid', bound
      ? 'the block says it is bound to a namespace but records no namespace UUID'
      : `the block records namespace UUID ${namespaceUuid} without the bound flag`);
  }
  const writer = readText(block, FIELDS.writer.offset, FIELDS.writer.size);
  if (writer === null) return damaged('bad-writer', 'the writer field is not NUL-terminated UTF-8 text');

  const sb: Superblock = {
    majorVersion, minorVersion, flags, uuid,
    namespaceUuid: bound ? namespaceUuid : null,
    deviceSize: 0n, reservedOffset: 0n, reservedSize: 0n, dataOffset: 0n, dataSize: 0n,
    primaryOffset: 0n, backupOffset: 0n, createdAt: 0n,
    pageSize: 0, pageInfoBytes: 0, m2pBytes: 0, compatM2pBytes: 0,
    writer,
  };
  for (const name of U64_FIELDS) sb[name] = block.readBigUInt64LE(FIELDS[name].offset);
  for (const name of U32_COST_FIELDS) sb[name] = block.readUInt32LE(FIELDS[name].offset);
  return { kind: 'ok', superblock: sb };
}

/** Where the backup copy of a device of `deviceSize` bytes lives. */
export function backupOffsetFor(deviceSize: bigint): bigint {
  return (deviceSize / (4n * KiB)) * (4n * KiB) - BACKUP_DISTANCE_FROM_END;
}

/** Field-by-field differences between two copies, ignoring which copy each is. */
export function differingFields(a: Superblock, b: Superblock): string[] {
  const keys = Object.keys(a) as (keyof Superblock)[];
  return keys.filter((key) => {
    if (key === 'flags') return (a.flags & ~FLAG_BACKUP_COPY) !== (b.flags & ~FLAG_BACKUP_COPY);
    return a[key] !== b[key];
  });
}

function damaged(reason: DecodeFailure, message: string): DecodeVerdict {
  return { kind: 'damaged', reason, message };
}

function hex32(value: number): string {
  return (value >>> 0).toString(16).padStart(8, '0');
}

function writeUuid(block: Buffer, offset: number, uuid: string): void {
  if (!isCanonicalUuid(uuid)) throw new RangeError(`not a UUID: ${uuid}`);
  Buffer.from(uuid.replaceAll('-', ''), 'hex').copy(block, offset);
}

/** At most `maxBytes` of `text` in UTF-8, cut before a character rather than inside one. */
function utf8Prefix(text: string, maxBytes: number): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return bytes;
  let end = maxBytes;
  // A continuation byte (10xxxxxx) at the cut means a character straddles it: drop all of it.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

function readUuid(block: Buffer, offset: number): string {
  const h = block.subarray(offset, offset + 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function readText(block: Buffer, offset: number, size: number): string | null {
  const field = block.subarray(offset, offset + size);
  const end = field.indexOf(0);
  if (end === -1) return null;
  if (field.subarray(end).some((byte) => byte !== 0)) return null;
  const text = field.subarray(0, end).toString('utf8');
  if (text.includes('\uFFFD') || /[\u0000-\u001f\u007f]/.test(text)) return null;
  return text;
}
