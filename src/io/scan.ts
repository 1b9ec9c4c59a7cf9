// Finds and judges the super block of one device with a fixed handful of small reads: the first
// two sectors with the GPT entry array after them, and the two super block copies. About 25 KiB on
// any device, from 8 MiB to many TiB, because every offset is fixed or comes from the partition
// table.

import { GPT_ENTRIES_MAX_BYTES, parseGptEntries, parseGptHeader } from '../core/gpt.js';
import { backupOffsetFor, PRIMARY_OFFSET, SUPERBLOCK_BYTES } from '../core/superblock.js';
import { judge, type TableInput, type Verdict } from '../core/validate.js';
import type { DeviceReader } from './ports.js';

export interface ScanOptions {
  /** The pmem namespace UUID, when the caller knows the device is a pmem namespace. */
  namespaceUuid?: string | null;
}

export async function scanDevice(device: DeviceReader, options: ScanOptions = {}): Promise<Verdict> {
  const table = await readTable(device);
  const primary = await device.read(PRIMARY_OFFSET, SUPERBLOCK_BYTES);
  const backupAt = backupOffsetFor(device.size);
  const backup = backupAt > PRIMARY_OFFSET + BigInt(SUPERBLOCK_BYTES)
    ? await device.read(backupAt, SUPERBLOCK_BYTES)
    : null;
  return judge({ deviceSize: device.size, table, primary, backup, ...options });
}

/** Where sfdisk and every other tool put the entry array: right after the header, 128 × 128 bytes. */
const USUAL_ENTRIES_BYTES = 128 * 128;

export async function readTable(device: DeviceReader): Promise<TableInput> {
  // One read for the MBR, the header and the entry array where it usually is; a second read only
  // for a table that keeps its entries elsewhere.
  const headerEnd = 2 * device.sectorSize;
  const first = await device.read(0n, headerEnd + USUAL_ENTRIES_BYTES);
  const header = parseGptHeader(first.subarray(0, headerEnd), device.sectorSize, device.size);
  if (header.kind !== 'gpt') return header;
  const { entriesOffset } = header.header;
  const entryBytes = Math.min(header.header.entriesBytes, GPT_ENTRIES_MAX_BYTES);
  const entriesEnd = entriesOffset + BigInt(entryBytes);
  const entries = entriesEnd <= BigInt(first.length)
    ? first.subarray(Number(entriesOffset), Number(entriesEnd))
    : await device.read(entriesOffset, entryBytes);
  return parseGptEntries(header.header, entries);
}
