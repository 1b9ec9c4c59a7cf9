// What the fuzzer does to a prepared device, as data that fast-check generates and shrinks:
// super block fields set to values aimed at the layout's own boundaries and at the ends of 64-bit
// arithmetic (resealed, so the check under test fires, or not, so the checksum must), raw bytes
// flipped, copies swapped, cloned or wiped, GPT header fields and partition entries rewritten
// (resealed or not), the MBR changed, and the device cut or grown under its layout.

import fc from 'fast-check';

import { backupOffsetFor, FIELDS, PRIMARY_OFFSET, SUPERBLOCK_BYTES } from '../../src/core/superblock.js';
import { crc32, GPT_HEADER, MBR_BOOT_SIGNATURE_OFFSET, MBR_PARTITION_TABLE_OFFSET, resealGptEntries, resealGptHeader, writeGptEntry } from './forge.js';
import type { MemoryImage } from './image.js';

const MiB = 1024n * 1024n;
const TWO_64 = 1n << 64n;
/** x86-64 physical addresses have 52 bits: no pmem device is larger. */
const LARGEST_DEVICE = 1n << 52n;

type Anchor =
  | 'zero' | 'size' | 'current' | 'reservedOffset' | 'reservedEnd' | 'dataOffset' | 'dataEnd'
  | 'backupOffset' | 'primaryOffset' | 'tableEnd' | 'backupTable';

export type U64Spec = { anchor: Anchor; delta: bigint } | { absolute: bigint };

type LbaAnchor = 'zero' | 'lastLba' | 'reserved' | 'dataStart' | 'dataEnd' | 'backup' | 'current';
export type LbaSpec = { anchor: LbaAnchor; delta: bigint } | { absolute: bigint };

type CopyName = 'primary' | 'backup' | 'both';
type U64Field = 'deviceSize' | 'reservedOffset' | 'reservedSize' | 'dataOffset' | 'dataSize' | 'primaryOffset' | 'backupOffset' | 'createdAt';
type U32Field = 'flags' | 'headerBytes' | 'pageSize' | 'pageInfoBytes' | 'm2pBytes' | 'compatM2pBytes';
type U16Field = 'majorVersion' | 'minorVersion';
type GptU64Field = 'myLba' | 'alternateLba' | 'firstUsableLba' | 'lastUsableLba' | 'entriesLba';
type GptU32Field = 'headerSize' | 'entryCount' | 'entrySize' | 'revision';

export type Mutation =
  | { kind: 'sb-u64'; copy: CopyName; field: U64Field; value: U64Spec }
  | { kind: 'sb-u32'; copy: CopyName; field: U32Field; value: number }
  | { kind: 'sb-u16'; copy: CopyName; field: U16Field; value: number }
  | { kind: 'sb-uuid'; copy: CopyName; field: 'uuid' | 'namespaceUuid'; value: 'zero' | 'other' | 'ones' }
  | { kind: 'sb-writer'; copy: CopyName; text: Uint8Array }
  | { kind: 'sb-byte'; copy: CopyName; at: number; xor: number; reseal: boolean }
  | { kind: 'sb-swap' }
  | { kind: 'sb-clone'; from: 'primary' | 'backup' }
  | { kind: 'sb-wipe'; copy: CopyName }
  | { kind: 'resize'; to: U64Spec }
  | { kind: 'follow-size' }
  | { kind: 'gpt-u64'; field: GptU64Field; value: LbaSpec; reseal: boolean }
  | { kind: 'gpt-u32'; field: GptU32Field; value: number; reseal: boolean }
  | { kind: 'gpt-entry'; index: number; first: LbaSpec; last: LbaSpec; used: boolean; reseal: boolean }
  | { kind: 'gpt-add-partition'; index: number; first: LbaSpec; last: LbaSpec }
  | { kind: 'gpt-byte'; at: number; xor: number; reseal: boolean }
  | { kind: 'mbr'; what: 'drop-boot-signature' | 'not-protective' | 'drop-gpt-signature' | 'wipe-start' };

export type NamespaceChoice = 'omit' | 'null' | 'same' | 'other';

export interface FuzzPlan {
  base: number;
  mutations: Mutation[];
  namespace: NamespaceChoice;
}

export const OTHER_NAMESPACE = 'ffffffff-0000-4000-8000-00000000beef';

// ---- generation ------------------------------------------------------------------------------

const DELTAS = [0n, 1n, -1n, 512n, -512n, 4096n, -4096n, 8192n, -8192n, MiB, -MiB, 2n * MiB, -2n * MiB, 4n * MiB, -4n * MiB];
const ABSOLUTE_U64 = [
  0n, 1n, 4096n, 2n * MiB, (1n << 32n) - 1n, 1n << 32n, 1n << 52n, 1n << 53n, (1n << 53n) + 1n, 1n << 63n,
  TWO_64 - 1n, TWO_64 - 4096n, TWO_64 - MiB, TWO_64 - 2n * MiB,
];
const U32_VALUES = [
  0, 1, 2, 3, 4, 7, 8, 31, 32, 33, 91, 92, 127, 128, 136, 191, 192, 193, 256, 512, 513, 4095, 4096, 4097,
  0x7fff_ffff, 0x8000_0000, 0xffff_ffff,
];

const anchors: Anchor[] = ['zero', 'size', 'current', 'reservedOffset', 'reservedEnd', 'dataOffset', 'dataEnd', 'backupOffset', 'primaryOffset', 'tableEnd', 'backupTable'];
const lbaAnchors: LbaAnchor[] = ['zero', 'lastLba', 'reserved', 'dataStart', 'dataEnd', 'backup', 'current'];
const LBA_DELTAS = [0n, 1n, -1n, 2n, -2n, 16n, -16n, 32n, -32n, 33n, -33n, 34n, 2048n, -2048n, 4096n, -4096n];

const delta = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...DELTAS) },
  { weight: 1, arbitrary: fc.integer({ min: -64, max: 64 }).map((pages) => BigInt(pages) * 4096n) },
);

export const u64Spec: fc.Arbitrary<U64Spec> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ anchor: fc.constantFrom(...anchors), delta }) },
  { weight: 2, arbitrary: fc.record({ absolute: fc.constantFrom(...ABSOLUTE_U64) }) },
  { weight: 1, arbitrary: fc.record({ absolute: fc.bigInt({ min: 0n, max: TWO_64 - 1n }) }) },
);

const lbaSpec: fc.Arbitrary<LbaSpec> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ anchor: fc.constantFrom(...lbaAnchors), delta: fc.constantFrom(...LBA_DELTAS) }) },
  { weight: 1, arbitrary: fc.record({ absolute: fc.constantFrom(0n, 1n, 2n, 33n, 34n, (1n << 32n) - 1n, 1n << 55n, TWO_64 - 1n) }) },
  { weight: 1, arbitrary: fc.record({ absolute: fc.bigInt({ min: 0n, max: TWO_64 - 1n }) }) },
);

const u32 = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...U32_VALUES) }, { weight: 1, arbitrary: fc.nat() });
const copyName = fc.constantFrom<CopyName>('both', 'both', 'primary', 'backup');

const writerText = fc.oneof(
  fc.constant(new Uint8Array(0)),
  fc.constant(new TextEncoder().encode('xen-pmem 9.9.9 (\u00e9dition sp\u00e9ciale)')),
  fc.constant(Uint8Array.from(Array(47).fill(0x61))),
  fc.constant(Uint8Array.from(Array(48).fill(0x61))),
  fc.constant(Uint8Array.from([0x78, 0x1b, 0x5b, 0x32, 0x4a])),
  fc.constant(Uint8Array.from([0x78, 0x7f])),
  fc.constant(Uint8Array.from([0x78, 0xc3])),
  fc.constant(Uint8Array.from([0x78, 0xef, 0xbf, 0xbd])),
  fc.constant(Uint8Array.from([0x78, 0xe2, 0x80, 0xae, 0x79])),
  fc.uint8Array({ minLength: 0, maxLength: 48 }),
);

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ kind: fc.constant('sb-u64' as const), copy: copyName, field: fc.constantFrom<U64Field>('deviceSize', 'reservedOffset', 'reservedSize', 'dataOffset', 'dataSize', 'primaryOffset', 'backupOffset', 'createdAt'), value: u64Spec }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('sb-u32' as const), copy: copyName, field: fc.constantFrom<U32Field>('flags', 'headerBytes', 'pageSize', 'pageInfoBytes', 'm2pBytes', 'compatM2pBytes'), value: u32 }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sb-u16' as const), copy: copyName, field: fc.constantFrom<U16Field>('majorVersion', 'minorVersion'), value: fc.constantFrom(0, 1, 2, 0xffff) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sb-uuid' as const), copy: copyName, field: fc.constantFrom('uuid' as const, 'namespaceUuid' as const), value: fc.constantFrom('zero' as const, 'other' as const, 'ones' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sb-writer' as const), copy: copyName, text: writerText }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('sb-byte' as const), copy: copyName, at: fc.oneof(fc.nat(191), fc.nat(SUPERBLOCK_BYTES - 1)), xor: fc.integer({ min: 1, max: 255 }), reseal: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'sb-swap' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('sb-clone' as const), from: fc.constantFrom('primary' as const, 'backup' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('sb-wipe' as const), copy: copyName }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('resize' as const), to: u64Spec }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'follow-size' as const }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('gpt-u64' as const), field: fc.constantFrom<GptU64Field>('myLba', 'alternateLba', 'firstUsableLba', 'lastUsableLba', 'entriesLba'), value: lbaSpec, reseal: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('gpt-u32' as const), field: fc.constantFrom<GptU32Field>('headerSize', 'entryCount', 'entrySize', 'revision'), value: u32, reseal: fc.boolean() }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('gpt-entry' as const), index: fc.nat(7), first: lbaSpec, last: lbaSpec, used: fc.boolean(), reseal: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('gpt-add-partition' as const), index: fc.integer({ min: 1, max: 7 }), first: lbaSpec, last: lbaSpec }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('gpt-byte' as const), at: fc.nat(2 * 512 + 16 * 1024 - 1), xor: fc.integer({ min: 1, max: 255 }), reseal: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('mbr' as const), what: fc.constantFrom('drop-boot-signature' as const, 'not-protective' as const, 'drop-gpt-signature' as const, 'wipe-start' as const) }) },
);

export function fuzzPlan(baseCount: number): fc.Arbitrary<FuzzPlan> {
  return fc.record({
    base: fc.nat(baseCount - 1),
    mutations: fc.array(mutation, { minLength: 0, maxLength: 5 }),
    namespace: fc.constantFrom<NamespaceChoice>('same', 'same', 'omit', 'null', 'other'),
  });
}

// ---- application -----------------------------------------------------------------------------

function copyOffsets(image: MemoryImage, copy: CopyName): bigint[] {
  const backup = backupOffsetFor(image.size);
  if (copy === 'primary') return [PRIMARY_OFFSET];
  if (copy === 'backup') return [backup];
  return [PRIMARY_OFFSET, backup];
}

function editBlock(image: MemoryImage, at: bigint, edit: (block: Buffer) => void, reseal = true): void {
  const block = image.readSync(at, SUPERBLOCK_BYTES);
  if (block.length < SUPERBLOCK_BYTES) return;
  edit(block);
  if (reseal) {
    block.writeUInt32LE(0, FIELDS.checksum.offset);
    block.writeUInt32LE(crc32(block), FIELDS.checksum.offset);
  }
  image.write(at, block);
}

function resolveU64(image: MemoryImage, spec: U64Spec, current: bigint): bigint {
  if ('absolute' in spec) return spec.absolute;
  const m = image.marks;
  const sector = BigInt(image.sectorSize);
  const base: Record<Anchor, bigint> = {
    zero: 0n,
    size: image.size,
    current,
    reservedOffset: m.reservedOffset,
    reservedEnd: m.reservedOffset + m.reservedSize,
    dataOffset: m.dataOffset,
    dataEnd: m.dataOffset + m.dataSize,
    backupOffset: backupOffsetFor(image.size),
    primaryOffset: PRIMARY_OFFSET,
    tableEnd: 34n * sector,
    backupTable: image.size - 33n * sector,
  };
  return BigInt.asUintN(64, base[spec.anchor] + spec.delta);
}

function resolveLba(image: MemoryImage, spec: LbaSpec, current: bigint): bigint {
  if ('absolute' in spec) return spec.absolute;
  const m = image.marks;
  const sector = BigInt(image.sectorSize);
  const base: Record<LbaAnchor, bigint> = {
    zero: 0n,
    lastLba: image.size / sector - 1n,
    reserved: m.reservedOffset / sector,
    dataStart: m.dataOffset / sector,
    dataEnd: (m.dataOffset + m.dataSize) / sector,
    backup: backupOffsetFor(image.size) / sector,
    current,
  };
  return BigInt.asUintN(64, base[spec.anchor] + spec.delta);
}

function headerSector(image: MemoryImage): Buffer {
  return image.readSync(BigInt(image.sectorSize), image.sectorSize);
}

/** Edits the GPT entry array where the header says it is (if it is small enough to edit). */
function editEntries(image: MemoryImage, edit: (entries: Buffer, entrySize: number) => void, reseal: boolean): void {
  const header = headerSector(image);
  if (header.length < 92) return;
  const count = header.readUInt32LE(GPT_HEADER.entryCount);
  const size = header.readUInt32LE(GPT_HEADER.entrySize);
  const bytes = count * size;
  if (size < 128 || bytes === 0 || bytes > 64 * 1024) return;
  const at = header.readBigUInt64LE(GPT_HEADER.entriesLba) * BigInt(image.sectorSize);
  const entries = image.readSync(at, bytes);
  if (entries.length < bytes) return;
  edit(entries, size);
  image.write(at, entries);
  if (reseal) {
    resealGptEntries(header, entries);
    image.write(BigInt(image.sectorSize), header);
  }
}

export function applyMutation(image: MemoryImage, m: Mutation): void {
  switch (m.kind) {
    case 'sb-u64':
      for (const at of copyOffsets(image, m.copy)) {
        editBlock(image, at, (b) => b.writeBigUInt64LE(resolveU64(image, m.value, b.readBigUInt64LE(FIELDS[m.field].offset)), FIELDS[m.field].offset));
      }
      return;
    case 'sb-u32':
      for (const at of copyOffsets(image, m.copy)) {
        editBlock(image, at, (b) => {
          // Flags keep each copy's own backup bit unless the new value is about exactly that bit.
          const value = m.field === 'flags' ? ((m.value & ~1) | (b.readUInt32LE(FIELDS.flags.offset) & 1)) >>> 0 : m.value;
          b.writeUInt32LE(value, FIELDS[m.field].offset);
        });
      }
      return;
    case 'sb-u16':
      for (const at of copyOffsets(image, m.copy)) editBlock(image, at, (b) => b.writeUInt16LE(m.value, FIELDS[m.field].offset));
      return;
    case 'sb-uuid':
      for (const at of copyOffsets(image, m.copy)) {
        editBlock(image, at, (b) => {
          const offset = FIELDS[m.field].offset;
          if (m.value === 'zero') b.fill(0, offset, offset + 16);
          else if (m.value === 'ones') b.fill(0xff, offset, offset + 16);
          else Buffer.from(OTHER_NAMESPACE.replaceAll('-', ''), 'hex').copy(b, offset);
        });
      }
      return;
    case 'sb-writer':
      for (const at of copyOffsets(image, m.copy)) {
        editBlock(image, at, (b) => {
          b.fill(0, FIELDS.writer.offset, FIELDS.writer.offset + FIELDS.writer.size);
          Buffer.from(m.text).copy(b, FIELDS.writer.offset, 0, FIELDS.writer.size);
        });
      }
      return;
    case 'sb-byte':
      for (const at of copyOffsets(image, m.copy)) editBlock(image, at, (b) => { b.writeUInt8(b.readUInt8(m.at) ^ m.xor, m.at); }, m.reseal);
      return;
    case 'sb-swap': {
      const backup = backupOffsetFor(image.size);
      const p = image.readSync(PRIMARY_OFFSET, SUPERBLOCK_BYTES);
      const b = image.readSync(backup, SUPERBLOCK_BYTES);
      image.write(PRIMARY_OFFSET, b);
      image.write(backup, p);
      return;
    }
    case 'sb-clone': {
      const backup = backupOffsetFor(image.size);
      const [from, to] = m.from === 'primary' ? [PRIMARY_OFFSET, backup] : [backup, PRIMARY_OFFSET];
      image.write(to, image.readSync(from, SUPERBLOCK_BYTES));
      return;
    }
    case 'sb-wipe':
      for (const at of copyOffsets(image, m.copy)) image.write(at, new Uint8Array(SUPERBLOCK_BYTES));
      return;
    case 'resize': {
      const to = resolveU64(image, m.to, image.size);
      image.size = to > LARGEST_DEVICE ? LARGEST_DEVICE : to;
      return;
    }
    case 'follow-size': {
      // A forger who knows the format: both copies rewritten (sealed) for the current size, the
      // backup moved to its new place, and the GPT's backup header moved to the new last LBA.
      const source = image.readSync(PRIMARY_OFFSET, SUPERBLOCK_BYTES);
      if (source.length < SUPERBLOCK_BYTES || image.size <= PRIMARY_OFFSET + 2n * BigInt(SUPERBLOCK_BYTES)) return;
      const newBackup = backupOffsetFor(image.size);
      const forged = Buffer.from(source);
      forged.writeBigUInt64LE(image.size, FIELDS.deviceSize.offset);
      forged.writeBigUInt64LE(BigInt.asUintN(64, newBackup), FIELDS.backupOffset.offset);
      for (const [at, backupFlag] of [[PRIMARY_OFFSET, 0], [newBackup, 1]] as const) {
        const block = Buffer.from(forged);
        block.writeUInt32LE(((block.readUInt32LE(FIELDS.flags.offset) & ~1) | backupFlag) >>> 0, FIELDS.flags.offset);
        block.writeUInt32LE(0, FIELDS.checksum.offset);
        block.writeUInt32LE(crc32(block), FIELDS.checksum.offset);
        image.write(at, block);
      }
      const header = headerSector(image);
      if (header.length >= 92) {
        header.writeBigUInt64LE(image.size / BigInt(image.sectorSize) - 1n, GPT_HEADER.alternateLba);
        image.write(BigInt(image.sectorSize), resealGptHeader(header));
      }
      return;
    }
    case 'gpt-u64': {
      const header = headerSector(image);
      if (header.length < 92) return;
      const offset = GPT_HEADER[m.field];
      header.writeBigUInt64LE(resolveLba(image, m.value, header.readBigUInt64LE(offset)), offset);
      image.write(BigInt(image.sectorSize), m.reseal ? resealGptHeader(header) : header);
      return;
    }
    case 'gpt-u32': {
      const header = headerSector(image);
      if (header.length < 92) return;
      header.writeUInt32LE(m.value >>> 0, GPT_HEADER[m.field]);
      image.write(BigInt(image.sectorSize), m.reseal ? resealGptHeader(header) : header);
      return;
    }
    case 'gpt-entry':
      editEntries(image, (entries, entrySize) => {
        if (m.index * entrySize + entrySize > entries.length) return;
        if (!m.used) {
          entries.fill(0, m.index * entrySize, (m.index + 1) * entrySize);
          return;
        }
        const currentFirst = entries.readBigUInt64LE(m.index * entrySize + 32);
        const currentLast = entries.readBigUInt64LE(m.index * entrySize + 40);
        writeGptEntry(entries, entrySize, m.index, resolveLba(image, m.first, currentFirst), resolveLba(image, m.last, currentLast));
      }, m.reseal);
      return;
    case 'gpt-add-partition': {
      // What a partitioning tool does when told to: widen the usable LBAs to take the new
      // partition, write its entry, and seal both checksums.
      const first = resolveLba(image, m.first, 0n);
      const last = resolveLba(image, m.last, first);
      const header = headerSector(image);
      if (header.length < 92) return;
      if (first < header.readBigUInt64LE(GPT_HEADER.firstUsableLba)) header.writeBigUInt64LE(first, GPT_HEADER.firstUsableLba);
      if (last > header.readBigUInt64LE(GPT_HEADER.lastUsableLba)) header.writeBigUInt64LE(last, GPT_HEADER.lastUsableLba);
      image.write(BigInt(image.sectorSize), resealGptHeader(header));
      editEntries(image, (entries, entrySize) => {
        if ((m.index + 1) * entrySize <= entries.length) writeGptEntry(entries, entrySize, m.index, first, last);
      }, true);
      return;
    }
    case 'gpt-byte': {
      const head = image.readSync(0n, 2 * image.sectorSize + 16 * 1024);
      if (m.at >= head.length) return;
      head.writeUInt8(head.readUInt8(m.at) ^ m.xor, m.at);
      image.write(0n, head);
      if (m.reseal) {
        const header = headerSector(image);
        if (header.length >= 92) {
          const entries = image.readSync(header.readBigUInt64LE(GPT_HEADER.entriesLba) * BigInt(image.sectorSize), Math.min(header.readUInt32LE(GPT_HEADER.entryCount) * header.readUInt32LE(GPT_HEADER.entrySize), 64 * 1024));
          resealGptEntries(header, entries);
          image.write(BigInt(image.sectorSize), header);
        }
      }
      return;
    }
    case 'mbr': {
      const mbr = image.readSync(0n, 512);
      if (mbr.length < 512) return;
      if (m.what === 'drop-boot-signature') mbr.writeUInt16LE(0, MBR_BOOT_SIGNATURE_OFFSET);
      else if (m.what === 'not-protective') mbr.writeUInt8(0x83, MBR_PARTITION_TABLE_OFFSET + 4);
      else if (m.what === 'wipe-start') mbr.fill(0);
      image.write(0n, mbr);
      // wipefs takes both signatures: the MBR's and the GPT header's.
      if (m.what === 'drop-gpt-signature' || m.what === 'wipe-start') {
        const header = headerSector(image);
        if (header.length >= 8) {
          header.fill(0, 0, 8);
          image.write(BigInt(image.sectorSize), header);
        }
      }
      return;
    }
  }
}

export function namespaceFor(image: MemoryImage, choice: NamespaceChoice): string | null | undefined {
  if (choice === 'omit') return undefined;
  if (choice === 'null') return null;
  if (choice === 'other') return OTHER_NAMESPACE;
  return image.marks.namespaceUuid ?? OTHER_NAMESPACE;
}

/** Short name of a mutation for the statistics. */
export function mutationName(m: Mutation): string {
  switch (m.kind) {
    case 'sb-u64': case 'sb-u32': case 'sb-u16': case 'sb-uuid': return `${m.kind}:${m.field}`;
    case 'gpt-u64': case 'gpt-u32': return `${m.kind}:${m.field}`;
    case 'mbr': return `mbr:${m.what}`;
    default: return m.kind;
  }
}
