// Byte-level forgery for hostile images and fuzzing: a CRC-32 of its own, the GUID partition
// table's field offsets as the UEFI specification gives them, and resealing of headers and entry
// arrays, so that a forged table passes its checksums and the check under test is the one that
// fires. Nothing here calls the project's codecs: the fuzz oracle builds on it too and must stay
// independent of what it judges.

/** CRC-32 as zlib and the UEFI specification compute it (reflected, polynomial 0xEDB88320). */
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** GPT header fields (UEFI 2.10, table 5.21), offsets within the header sector. */
export const GPT_HEADER = {
  signature: 0,
  revision: 8,
  headerSize: 12,
  headerCrc: 16,
  myLba: 24,
  alternateLba: 32,
  firstUsableLba: 40,
  lastUsableLba: 48,
  diskGuid: 56,
  entriesLba: 72,
  entryCount: 80,
  entrySize: 84,
  entriesCrc: 88,
} as const;

/** GPT partition entry fields (UEFI 2.10, table 5.22). */
export const GPT_ENTRY = {
  typeGuid: 0,
  uniqueGuid: 16,
  firstLba: 32,
  lastLba: 40,
  attributes: 48,
  name: 56,
} as const;

export const MBR_BOOT_SIGNATURE_OFFSET = 510;
export const MBR_PARTITION_TABLE_OFFSET = 446;
export const MBR_TYPE_GPT_PROTECTIVE = 0xee;

/** The CRC a header sector must carry: over `headerSize` bytes with the CRC field zero. */
export function gptHeaderCrc(sector: Uint8Array): number {
  const view = Buffer.from(sector.buffer, sector.byteOffset, sector.byteLength);
  const declared = view.readUInt32LE(GPT_HEADER.headerSize);
  const length = Math.min(declared, view.length);
  const copy = Buffer.from(view.subarray(0, length));
  if (copy.length >= GPT_HEADER.headerCrc + 4) copy.writeUInt32LE(0, GPT_HEADER.headerCrc);
  return crc32(copy);
}

/** Writes the header CRC that makes the sector self-consistent again. */
export function resealGptHeader(sector: Buffer): Buffer {
  sector.writeUInt32LE(gptHeaderCrc(sector), GPT_HEADER.headerCrc);
  return sector;
}

/**
 * After an entry was edited: the entry array's CRC goes into the header, then the header is
 * resealed. `entries` must hold at least entryCount * entrySize bytes.
 */
export function resealGptEntries(headerSector: Buffer, entries: Uint8Array): void {
  const count = headerSector.readUInt32LE(GPT_HEADER.entryCount);
  const size = headerSector.readUInt32LE(GPT_HEADER.entrySize);
  const length = Math.min(count * size, entries.length);
  headerSector.writeUInt32LE(crc32(entries.subarray(0, length)), GPT_HEADER.entriesCrc);
  resealGptHeader(headerSector);
}

/** A GUID in the mixed-endian byte order GPT stores (first three groups little-endian). */
export function guidBytes(guid: string): Buffer {
  const hex = guid.replaceAll('-', '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new RangeError(`not a GUID: ${guid}`);
  const raw = Buffer.from(hex, 'hex');
  return Buffer.concat([
    Buffer.from(raw.subarray(0, 4)).reverse(),
    Buffer.from(raw.subarray(4, 6)).reverse(),
    Buffer.from(raw.subarray(6, 8)).reverse(),
    raw.subarray(8, 16),
  ]);
}

/** Linux filesystem data, the type setup gives its partitions. */
export const LINUX_DATA_GUID = '0fc63daf-8483-4772-8e79-3d69d8477de4';

/** Fills entry `index` of an entry array with a partition over LBAs first..last (inclusive). */
export function writeGptEntry(entries: Buffer, entrySize: number, index: number, firstLba: bigint, lastLba: bigint, typeGuid = LINUX_DATA_GUID): void {
  const at = index * entrySize;
  entries.fill(0, at, at + entrySize);
  guidBytes(typeGuid).copy(entries, at + GPT_ENTRY.typeGuid);
  // Any unique GUID will do; derive it from the index so images are reproducible.
  guidBytes(`${(0x5a000000 + index).toString(16)}-0000-4000-8000-000000000000`).copy(entries, at + GPT_ENTRY.uniqueGuid);
  entries.writeBigUInt64LE(BigInt.asUintN(64, firstLba), at + GPT_ENTRY.firstLba);
  entries.writeBigUInt64LE(BigInt.asUintN(64, lastLba), at + GPT_ENTRY.lastLba);
}

/** Deterministic pseudo-random numbers (xorshift32) for reproducible garbage. */
export function xorshift32(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state;
  };
}
