// The on-disk super block, format v1. This module is the specification: docs/superblock.md mirrors
// the FIELDS table below, and test/superblock.test.ts asserts every offset. The writer and the
// reader both walk FIELDS, each field by its kind, so a field added to the table is written and
// read without another line of code here (docs/superblock.md, "Adding a minor version").
//
// Decoding never throws and trusts nothing: the signature is checked first (so that "no super
// block here" and "a damaged one" are different verdicts), then the checksum over the whole block,
// then the major version, and only then are fields read. Range checks that need the device
// (sizes, overlaps, Xen's rule) live in validate.ts.

import CRC32 from 'crc-32';
import { KiB, MiB } from './units.js';
import { isCanonicalUuid, NIL_UUID } from './uuid.js';

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

type FieldKind = 'bytes' | 'u16' | 'u32' | 'u64' | 'uuid' | 'text';
interface FieldSpec {
  offset: number;
  size: number;
  kind: FieldKind;
}

/**
 * Byte layout of v1.0. Little-endian throughout. Offsets relative to the start of the block.
 * A later minor version appends its fields after `writer`, each with the version that added it
 * in a comment, and a row in MINORS below.
 */
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

type FieldName = keyof typeof FIELDS;
/** Written by the codec itself (the constant, the sum, the version's header size), not carried in a Superblock. */
type FramingField = 'signature' | 'checksum' | 'headerBytes';
type ContentField = Exclude<FieldName, FramingField>;
const CONTENT_FIELDS = (Object.keys(FIELDS) as FieldName[])
  .filter((name): name is ContentField => name !== 'signature' && name !== 'checksum' && name !== 'headerBytes')
  .map((name) => [name, FIELDS[name]] as const);

/** Bytes of the block that v1.0 gives meaning to; the rest must be zero in v1.0. */
export const HEADER_BYTES_V1_0 = 192;

/**
 * What each minor version of major 1 this code knows declares, indexed by minor: the header size
 * a block of that version must carry, and the flags it defines. A block of a later minor is read
 * as the newest one known here, after its own header size is checked to be plausible.
 */
const MINORS: readonly { headerBytes: number; flags: number }[] = [
  /* 1.0 */ { headerBytes: HEADER_BYTES_V1_0, flags: FLAG_BACKUP_COPY | FLAG_NAMESPACE_BOUND },
];
const NEWEST_KNOWN = MINORS[MINORS.length - 1]!;

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

// A field added to FIELDS and not here (or the reverse) fails to compile.
type SameKeys<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const superblockMatchesFields: SameKeys<keyof Superblock, ContentField> = true;
void superblockMatchesFields;

export type DecodeVerdict =
  | {
    kind: 'ok';
    superblock: Superblock;
    /** The header size the block declares. */
    headerBytes: number;
    /** The bytes past the fields this code knows, to the end of the block: a later minor's fields, then zero padding. */
    unread: Buffer;
  }
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

type FieldValue = number | bigint | string | null;

/** How each kind of field is written. A UUID field holding null is the nil UUID. */
function writeField(block: Buffer, { offset, size, kind }: FieldSpec, value: FieldValue): void {
  switch (kind) {
    case 'u16': block.writeUInt16LE(value as number, offset); return;
    case 'u32': block.writeUInt32LE((value as number) >>> 0, offset); return;
    case 'u64': block.writeBigUInt64LE(value as bigint, offset); return;
    case 'uuid': writeUuid(block, offset, (value as string | null) ?? NIL_UUID); return;
    case 'text': utf8Prefix(value as string, size - 1).copy(block, offset); return;
    case 'bytes': Buffer.from(value as string, 'latin1').copy(block, offset, 0, size); return;
  }
}

/** How each kind of field is read; a text field that is not clean NUL-padded UTF-8 reads as null. */
function readField(block: Buffer, { offset, size, kind }: FieldSpec): FieldValue {
  switch (kind) {
    case 'u16': return block.readUInt16LE(offset);
    case 'u32': return block.readUInt32LE(offset);
    case 'u64': return block.readBigUInt64LE(offset);
    case 'uuid': return readUuid(block, offset);
    case 'text': return readText(block, offset, size);
    case 'bytes': return block.subarray(offset, offset + size).toString('latin1');
  }
}

/** What a field of a later minor holds in a block written before it: its kind's zero. */
function zeroOf(kind: FieldKind): FieldValue {
  switch (kind) {
    case 'u16': case 'u32': return 0;
    case 'u64': return 0n;
    case 'uuid': return NIL_UUID;
    case 'text': case 'bytes': return '';
  }
}

function within(spec: FieldSpec, headerBytes: number): boolean {
  return spec.offset + spec.size <= headerBytes;
}

export function encodeSuperblock(sb: Superblock): Buffer {
  const block = Buffer.alloc(SUPERBLOCK_BYTES);
  const headerBytes = (MINORS[sb.minorVersion] ?? NEWEST_KNOWN).headerBytes;
  writeField(block, FIELDS.signature, SIGNATURE);
  writeField(block, FIELDS.headerBytes, headerBytes);
  for (const [name, spec] of CONTENT_FIELDS) {
    if (within(spec, headerBytes)) writeField(block, spec, sb[name]);
  }
  // Checksum last, over everything else, as the kernel's pfn info block does.
  writeField(block, FIELDS.checksum, superblockChecksum(block));
  return block;
}

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
  const stored = readField(block, FIELDS.checksum) as number;
  const computed = superblockChecksum(block);
  if (stored !== computed) {
    return damaged('bad-checksum',
      `checksum is 0x${hex32(stored)} but the block sums to 0x${hex32(computed)}`);
  }
  const majorVersion = readField(block, FIELDS.majorVersion) as number;
  if (majorVersion !== MAJOR_VERSION) {
    return damaged('unsupported-major-version',
      `format version ${majorVersion}.x is not understood by this version (it reads ${MAJOR_VERSION}.x)`);
  }
  const minorVersion = readField(block, FIELDS.minorVersion) as number;
  const headerBytes = readField(block, FIELDS.headerBytes) as number;
  const minor = MINORS[minorVersion];
  // Later minor versions may add fields after v1.0's; they must declare them in headerBytes.
  if (headerBytes < HEADER_BYTES_V1_0 || headerBytes > SUPERBLOCK_BYTES
      || (minor !== undefined && headerBytes !== minor.headerBytes)) {
    return damaged('bad-header-size',
      `header size ${headerBytes} is impossible for version ${majorVersion}.${minorVersion}`);
  }
  const flags = readField(block, FIELDS.flags) as number;
  if (minor !== undefined && (flags & ~minor.flags) !== 0) {
    return damaged('unknown-flags', `flags 0x${hex32(flags)} include bits this version does not define`);
  }
  const paddingStart = headerBytes;
  const firstNonZero = block.subarray(paddingStart).findIndex((byte) => byte !== 0);
  if (firstNonZero !== -1) {
    return damaged('nonzero-padding',
      `byte ${paddingStart + firstNonZero} is past the ${headerBytes}-byte header and must be zero`);
  }

  const values = {} as Record<ContentField, FieldValue>;
  for (const [name, spec] of CONTENT_FIELDS) values[name] = within(spec, headerBytes) ? readField(block, spec) : zeroOf(spec.kind);
  if (values.uuid === NIL_UUID) return damaged('bad-uuid', 'the reservation UUID is all zero');
  const bound = (flags & FLAG_NAMESPACE_BOUND) !== 0;
  if (bound === (values.namespaceUuid === NIL_UUID)) {
    return damaged('bad-uuid', bound
      ? 'the block says it is bound to a namespace but records no namespace UUID'
      : `the block records namespace UUID ${values.namespaceUuid} without the bound flag`);
  }
  if (values.writer === null) return damaged('bad-writer', 'the writer field is not NUL-terminated UTF-8 text');
  if (!bound) values.namespaceUuid = null;
  return { kind: 'ok', superblock: values as unknown as Superblock, headerBytes, unread: block.subarray(NEWEST_KNOWN.headerBytes) };
}

/** Where the backup copy of a device of `deviceSize` bytes lives. */
export function backupOffsetFor(deviceSize: bigint): bigint {
  return (deviceSize / (4n * KiB)) * (4n * KiB) - BACKUP_DISTANCE_FROM_END;
}

/** Field-by-field differences between two copies, in FIELDS order, ignoring which copy each is. */
export function differingFields(a: Superblock, b: Superblock): string[] {
  return CONTENT_FIELDS.map(([name]) => name).filter((name) => {
    if (name === 'flags') return (a.flags & ~FLAG_BACKUP_COPY) !== (b.flags & ~FLAG_BACKUP_COPY);
    return a[name] !== b[name];
  });
}

/**
 * Everything two decoded copies disagree on: their fields, and what the fields cannot show, the
 * header size and the bytes a later minor version gives meaning to. Setup writes both copies byte
 * for byte alike but for the backup flag, so copies that differ anywhere else come from different
 * setups (or one was forged).
 */
export function differingCopies(
  a: Extract<DecodeVerdict, { kind: 'ok' }>,
  b: Extract<DecodeVerdict, { kind: 'ok' }>,
): string[] {
  const found = differingFields(a.superblock, b.superblock);
  if (a.headerBytes !== b.headerBytes) found.push('headerBytes');
  if (!a.unread.equals(b.unread)) found.push(`bytes ${NEWEST_KNOWN.headerBytes}-${SUPERBLOCK_BYTES - 1}`);
  return found;
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
