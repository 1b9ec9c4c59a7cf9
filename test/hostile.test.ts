// The hostile corpus: images made by the real setup path (planner, sfdisk, super block writer),
// then damaged or forged the way a guest that owned the device, a stale image or a copy from
// another host would leave them. Every case must come out `invalid` with its own reason code,
// the same through scanDevice, through `xen-pmem inspect --json` and through the daemon's
// decision, and the test hypervisor must never see a pmem_add for any of them. A positive
// control at the end proves that this very rig does report a valid device.

import assert from 'node:assert/strict';
import { mkdir, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { main, processIO } from '../src/cli/xen-pmem.js';
import { FIELDS, FLAG_NAMESPACE_BOUND, SUPERBLOCK_BYTES, backupOffsetFor, type Superblock } from '../src/core/superblock.js';
import { GiB, KiB, MiB, U64_MAX } from '../src/core/units.js';
import type { Verdict } from '../src/core/validate.js';
import { Controller } from '../src/daemon/controller.js';
import type { DeviceEvent } from '../src/daemon/ports.js';
import type { DeviceRecord } from '../src/daemon/state-store.js';
import { openDevice } from '../src/io/device.js';
import type { DeviceReader } from '../src/io/ports.js';
import { scanDevice } from '../src/io/scan.js';
import type { RegionSpec } from '../fixtures/sysfs-tree.js';
import { LINUX_DATA_GUID, GPT_HEADER, MBR_PARTITION_TABLE_OFFSET, resealGptEntries, resealGptHeader, writeGptEntry } from './fuzz/forge.js';
import { runCliAsync, stackTraceLines, type CliResult, type InspectJson } from '../fixtures/cli.js';
import {
  makeDaemonHost, recordingLogger, show, testConfig, type DaemonHost, type RecordingLogger, forgetXenInProcess,
} from '../fixtures/daemon-host.js';
import {
  copyOffsets, flipByte, patchSuperblockBytes, readBytes, readSuperblockAt, rewriteSuperblocks, writeBytes,
} from './helpers/damage.js';
import { copySparseImage, hasCommand, resizeImage, sfdiskDump, writeTable } from '../fixtures/images.js';

const skip = hasCommand('sfdisk') ? false : 'sfdisk is not installed (Debian package fdisk): the corpus is made with the real setup path';

const NS_A = '3c0d6a52-8f41-4b7e-9a1d-0e6f2b7c5a11';
const NS_B = '9b2e4f61-0c3d-4a8e-b5f7-1d2c3e4f5a22';
const NS_C = '5e7a9c1b-2d4f-4e6a-8c0b-3f5d7e9a1b33';
const GiB4 = 0x1_0000_0000n;
const SIZE = 256n * MiB;

/**
 * Four pmem devices: pmem0 and pmem1 of the same size in different labelled namespaces, pmem2
 * twice as big, pmem3 in a label-less namespace (no UUID), so that copies can be moved between
 * devices of another size or namespace.
 */
const REGIONS: RegionSpec[] = [
  { id: 0, start: GiB4, size: SIZE, namespaces: [{ id: 0, mode: 'raw', uuid: NS_A }] },
  { id: 1, start: GiB4 + SIZE, size: SIZE, namespaces: [{ id: 0, mode: 'raw', uuid: NS_B }] },
  { id: 2, start: GiB4 + 2n * SIZE, size: 2n * SIZE, namespaces: [{ id: 0, mode: 'raw', uuid: NS_C }] },
  { id: 3, start: GiB4 + 4n * SIZE, size: SIZE, namespaces: [{ id: 0, mode: 'raw' }] },
];
const NAMESPACE_OF: Record<string, string | null> = { pmem0: NS_A, pmem1: NS_B, pmem2: NS_C, pmem3: null };

type Device = 'pmem0' | 'pmem1' | 'pmem2' | 'pmem3';
type Base = 'bound' | 'bound-again' | 'unbound' | 'big';

interface Corpus {
  /** A private sparse copy of a pristine image, to damage. */
  fresh(base: Base): string;
  /** The pristine primary super block of a base image. */
  superblock(base: Base): Superblock;
}

interface HostileCase {
  name: string;
  /** Why a daemon must refuse this device: the threat in one sentence. */
  why: string;
  reason: string;
  /** The device the damaged image is presented as (its size and namespace come from sysfs). */
  device?: Device;
  /**
   * false when `inspect` cannot see the problem: it runs on a bare file and knows no namespace,
   * so a binding can only be checked where sysfs says which namespace the device is.
   */
  inspect?: boolean;
  make(corpus: Corpus): string;
}

const { primary: PRIMARY, backup: BACKUP, both: BOTH } = copyOffsets(SIZE);
const SECTOR = 512n;
const HEADER_LBA_OFFSET = SECTOR;
const ENTRIES_OFFSET = 2n * SECTOR;
const ENTRIES_BYTES = 128 * 128;

function editGptHeader(path: string, change: (header: Buffer) => void, reseal = true): void {
  const header = Buffer.from(readBytes(path, HEADER_LBA_OFFSET, Number(SECTOR)));
  change(header);
  if (reseal) resealGptHeader(header);
  writeBytes(path, HEADER_LBA_OFFSET, header);
}

function editGptEntries(path: string, change: (entries: Buffer) => void, reseal = true): void {
  const entries = Buffer.from(readBytes(path, ENTRIES_OFFSET, ENTRIES_BYTES));
  change(entries);
  writeBytes(path, ENTRIES_OFFSET, entries);
  if (reseal) editGptHeader(path, (header) => resealGptEntries(header, entries), false);
}

/** sfdisk's own dump with `edit` applied, written back by sfdisk: what an operator's tool does. */
function repartition(path: string, edit: (dump: string) => string): void {
  writeTable(path, edit(sfdiskDump(path)));
}

const lba = (bytes: bigint): bigint => bytes / SECTOR;

const CASES: HostileCase[] = [
  // --- trusting a copy ----------------------------------------------------------------------
  {
    name: 'device truncated inside the primary copy',
    why: 'a copy that cannot be read whole cannot be checked, so nothing in it can be believed',
    reason: 'short-read',
    make: (c) => { const p = c.fresh('bound'); resizeImage(p, PRIMARY + 100n); return p; },
  },
  {
    name: 'device truncated to half its size (backup copy and backup GPT gone)',
    why: 'the layout describes memory this device no longer has',
    reason: 'device-size-mismatch',
    make: (c) => { const p = c.fresh('bound'); resizeImage(p, SIZE / 2n); return p; },
  },
  {
    name: 'device grown by 2 MiB under a stale super block',
    why: 'the super block was written for another device size; its areas were sized for that one',
    reason: 'device-size-mismatch',
    make: (c) => { const p = c.fresh('bound'); resizeImage(p, SIZE + 2n * MiB); return p; },
  },
  {
    name: 'one bit flipped in the reserved size of both copies, checksums left as they were',
    why: 'a forger who does not reseal changes a checksummed byte',
    reason: 'bad-checksum',
    make: (c) => { const p = c.fresh('bound'); for (const at of BOTH) flipByte(p, at + BigInt(FIELDS.reservedSize.offset)); return p; },
  },
  {
    name: 'reserved offset moved in the primary without resealing, backup checksum zeroed',
    why: 'neither copy sums to its stored checksum',
    reason: 'bad-checksum',
    make: (c) => {
      const p = c.fresh('bound');
      writeBytes(p, PRIMARY + BigInt(FIELDS.reservedOffset.offset), Buffer.from([0, 0, 0x40]));
      writeBytes(p, BACKUP + BigInt(FIELDS.checksum.offset), Buffer.alloc(4));
      return p;
    },
  },
  {
    name: 'major version 0 (resealed)',
    why: 'a reader must never guess at a format version it does not know',
    reason: 'unsupported-major-version',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ majorVersion: 0 })); return p; },
  },
  {
    name: 'major version 0xffff (resealed)',
    why: 'a reader must never guess at a format version it does not know',
    reason: 'unsupported-major-version',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ majorVersion: 0xffff })); return p; },
  },
  {
    name: 'minor version 1 declaring a 4097-byte header',
    why: 'a header larger than the block would make the reader trust bytes that do not exist',
    reason: 'bad-header-size',
    make: (c) => {
      const p = c.fresh('bound');
      for (const at of BOTH) patchSuperblockBytes(p, at, (b) => { b.writeUInt16LE(1, FIELDS.minorVersion.offset); b.writeUInt32LE(4097, FIELDS.headerBytes.offset); });
      return p;
    },
  },
  {
    name: 'version 1.0 declaring the whole 4096-byte block as header',
    why: 'it would hide arbitrary bytes from the zero-padding check',
    reason: 'bad-header-size',
    make: (c) => { const p = c.fresh('bound'); for (const at of BOTH) patchSuperblockBytes(p, at, (b) => b.writeUInt32LE(4096, FIELDS.headerBytes.offset)); return p; },
  },
  {
    name: 'flag bit 31 set in a 1.0 block',
    why: 'a 1.0 block with flags 1.0 does not define means something this reader cannot know',
    reason: 'unknown-flags',
    make: (c) => { const p = c.fresh('bound'); for (const at of BOTH) patchSuperblockBytes(p, at, (b) => b.writeUInt32LE((b.readUInt32LE(FIELDS.flags.offset) | 0x8000_0000) >>> 0, FIELDS.flags.offset)); return p; },
  },
  {
    name: 'a payload hidden in the last byte of the padding',
    why: 'padding must be zero so that later versions can give it meaning',
    reason: 'nonzero-padding',
    make: (c) => { const p = c.fresh('bound'); for (const at of BOTH) patchSuperblockBytes(p, at, (b) => { b[SUPERBLOCK_BYTES - 1] = 0x5a; }); return p; },
  },
  {
    name: 'an all-zero reservation UUID',
    why: 'the ledger identifies a layout by its UUID; zero identifies nothing',
    reason: 'bad-uuid',
    make: (c) => { const p = c.fresh('bound'); for (const at of BOTH) patchSuperblockBytes(p, at, (b) => b.fill(0, FIELDS.uuid.offset, FIELDS.uuid.offset + 16)); return p; },
  },
  {
    name: 'a namespace UUID recorded with the bound flag cleared',
    why: 'clearing the flag would switch off the namespace check while the UUID stays for show',
    reason: 'bad-uuid',
    make: (c) => { const p = c.fresh('bound'); for (const at of BOTH) patchSuperblockBytes(p, at, (b) => b.writeUInt32LE(b.readUInt32LE(FIELDS.flags.offset) & ~FLAG_NAMESPACE_BOUND, FIELDS.flags.offset)); return p; },
  },
  {
    name: 'the bound flag set without a namespace UUID',
    why: 'a binding to nothing cannot be checked',
    reason: 'bad-uuid',
    make: (c) => { const p = c.fresh('unbound'); for (const at of BOTH) patchSuperblockBytes(p, at, (b) => b.writeUInt32LE(b.readUInt32LE(FIELDS.flags.offset) | FLAG_NAMESPACE_BOUND, FIELDS.flags.offset)); return p; },
  },
  {
    name: 'a writer field of 48 letters and no terminator',
    why: 'an unterminated string runs into the padding',
    reason: 'bad-writer',
    make: (c) => { const p = c.fresh('bound'); for (const at of BOTH) patchSuperblockBytes(p, at, (b) => b.fill(0x41, FIELDS.writer.offset, FIELDS.writer.offset + FIELDS.writer.size)); return p; },
  },
  {
    name: 'a writer field carrying a terminal escape sequence',
    why: 'the writer goes into journal lines and terminals; ESC [2J would clear an operator\'s screen',
    reason: 'bad-writer',
    make: (c) => {
      const p = c.fresh('bound');
      const text = Buffer.from('xen-pmem\x1b[2J\x1b[Hok', 'latin1');
      for (const at of BOTH) patchSuperblockBytes(p, at, (b) => { b.fill(0, FIELDS.writer.offset, FIELDS.writer.offset + FIELDS.writer.size); text.copy(b, FIELDS.writer.offset); });
      return p;
    },
  },
  {
    name: 'a writer field that is not UTF-8',
    why: 'bytes that are not text have no place in a log line',
    reason: 'bad-writer',
    make: (c) => { const p = c.fresh('bound'); for (const at of BOTH) patchSuperblockBytes(p, at, (b) => { b[FIELDS.writer.offset + 3] = 0xff; }); return p; },
  },
  {
    name: 'signatures at the wrong offsets: the two copies swapped',
    why: 'a copy found where it does not live was moved there, not written there by setup',
    reason: 'misplaced-copy',
    make: (c) => {
      const p = c.fresh('bound');
      const primary = readBytes(p, PRIMARY, SUPERBLOCK_BYTES);
      const backup = readBytes(p, BACKUP, SUPERBLOCK_BYTES);
      writeBytes(p, PRIMARY, backup);
      writeBytes(p, BACKUP, primary);
      return p;
    },
  },
  {
    name: 'both copies claiming the backup lives at 0xfffffffffff00000',
    why: 'the recorded copy offsets must be the ones a device of the recorded size has',
    reason: 'misplaced-copy',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ backupOffset: U64_MAX - MiB + 1n })); return p; },
  },
  {
    name: 'both copies claiming the primary lives at offset 0, over the MBR',
    why: 'the recorded copy offsets must be the ones a device of the recorded size has',
    reason: 'misplaced-copy',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ primaryOffset: 0n })); return p; },
  },
  {
    name: 'primary and backup from two different setups of this device',
    why: 'a stale copy and a current one cannot be told apart, so neither is used',
    reason: 'copies-disagree',
    make: (c) => {
      const p = c.fresh('bound');
      const other = c.fresh('bound-again');
      writeBytes(p, BACKUP, readBytes(other, BACKUP, SUPERBLOCK_BYTES));
      return p;
    },
  },
  {
    name: 'the backup forged (resealed) with a data area 2 MiB larger',
    why: 'an attacker who rewrites one copy must not get to choose which one wins',
    reason: 'copies-disagree',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, [BACKUP], (sb) => ({ dataSize: sb.dataSize + 2n * MiB })); return p; },
  },
  {
    name: 'primary from a namespace-bound setup, backup from an unbound one',
    why: 'copies from different setups disagree on the binding',
    reason: 'copies-disagree',
    make: (c) => {
      const p = c.fresh('bound');
      writeBytes(p, BACKUP, readBytes(c.fresh('unbound'), BACKUP, SUPERBLOCK_BYTES));
      return p;
    },
  },
  {
    name: 'minor version 1 in both copies, only the backup declaring a 256-byte header',
    why: 'copies that disagree on how much of the block means something come from different writers',
    reason: 'copies-disagree',
    make: (c) => {
      const p = c.fresh('bound');
      for (const at of BOTH) {
        patchSuperblockBytes(p, at, (b) => {
          b.writeUInt16LE(1, FIELDS.minorVersion.offset);
          if (at === BACKUP) b.writeUInt32LE(256, FIELDS.headerBytes.offset);
        });
      }
      return p;
    },
  },
  {
    name: 'minor version 1 with a 256-byte header, a field 1.0 does not know set only in the backup',
    why: 'a value a later reader would act on must be the same in both copies',
    reason: 'copies-disagree',
    make: (c) => {
      const p = c.fresh('bound');
      for (const at of BOTH) {
        patchSuperblockBytes(p, at, (b) => {
          b.writeUInt16LE(1, FIELDS.minorVersion.offset);
          b.writeUInt32LE(256, FIELDS.headerBytes.offset);
          if (at === BACKUP) b.writeBigUInt64LE(0x4000_0000n, 200);
        });
      }
      return p;
    },
  },
  // --- binding to this device ---------------------------------------------------------------
  {
    name: 'a whole image copied onto a device twice its size',
    why: 'a super block copied to a device of another size describes the wrong device',
    reason: 'device-size-mismatch',
    device: 'pmem2',
    make: (c) => { const p = c.fresh('bound'); resizeImage(p, 2n * SIZE); return p; },
  },
  {
    name: 'the first half of a 512 MiB device\'s image copied onto a 256 MiB device',
    why: 'its areas and its backup copy lie past the end of this device',
    reason: 'device-size-mismatch',
    make: (c) => { const p = c.fresh('big'); resizeImage(p, SIZE); return p; },
  },
  {
    name: 'device size forged as 2^60 with the backup offset to match',
    why: 'values past 2^52 cannot describe this device; the size binds the block to it',
    reason: 'device-size-mismatch',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ deviceSize: 1n << 60n, backupOffset: backupOffsetFor(1n << 60n) })); return p; },
  },
  {
    name: 'an image bound to namespace A copied to a same-size device in namespace B',
    why: 'a copy from another namespace (or host) must not claim this one\'s memory',
    reason: 'namespace-mismatch',
    device: 'pmem1',
    inspect: false,
    make: (c) => c.fresh('bound'),
  },
  {
    name: 'an image bound to namespace A on a label-less namespace that has no UUID',
    why: 'a binding that cannot be confirmed is not confirmed',
    reason: 'namespace-mismatch',
    device: 'pmem3',
    inspect: false,
    make: (c) => c.fresh('bound'),
  },
  // --- what the block means -----------------------------------------------------------------
  {
    name: 'page size 0',
    why: 'the reserved area was sized for pages Xen does not use',
    reason: 'unsupported-page-size',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ pageSize: 0 })); return p; },
  },
  {
    name: 'page size 2^32 - 1',
    why: 'the reserved area was sized for pages Xen does not use',
    reason: 'unsupported-page-size',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ pageSize: 0xffff_ffff })); return p; },
  },
  {
    name: 'page_info cost recorded as 0 bytes',
    why: 'a cost below Xen\'s would make the recorded-cost check vacuous',
    reason: 'costs-below-xen',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ pageInfoBytes: 0 })); return p; },
  },
  {
    name: 'M2P cost recorded as 7 bytes',
    why: 'an M2P entry is 8 bytes on x86-64; less means the area was sized too small',
    reason: 'costs-below-xen',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ m2pBytes: 7 })); return p; },
  },
  {
    name: 'page_info cost recorded as 2^32 - 1 bytes',
    why: 'by its own costs the reserved area would need far more than it has',
    reason: 'reserved-too-small',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ pageInfoBytes: 0xffff_ffff })); return p; },
  },
  {
    name: 'data area starting 512 bytes past a 2 MiB boundary',
    why: 'guests map data in superpages, and Xen in whole pages',
    reason: 'misaligned',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, (sb) => ({ dataOffset: sb.dataOffset + 512n })); return p; },
  },
  {
    name: 'reserved size one byte short of 4 MiB',
    why: 'Xen takes reserved memory in whole pages',
    reason: 'misaligned',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, (sb) => ({ reservedSize: sb.reservedSize - 1n })); return p; },
  },
  {
    name: 'reserved area of size 0',
    why: 'with nowhere for its structures Xen would take them from guest data',
    reason: 'area-empty',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ reservedSize: 0n })); return p; },
  },
  {
    name: 'data area starting at 2^52 bytes',
    why: 'values past 2^52 point outside any pmem this device has',
    reason: 'area-outside-device',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ dataOffset: 1n << 52n })); return p; },
  },
  {
    name: 'reserved area at 2^64 - 2 MiB, 4 MiB long (wraps to 2 MiB in 64-bit arithmetic)',
    why: 'offset plus size past 2^64 must not wrap around into the start of the device',
    reason: 'area-outside-device',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ reservedOffset: (1n << 64n) - 2n * MiB })); return p; },
  },
  {
    name: 'reserved size 2^64 - 2 MiB (offset plus size wraps to 0)',
    why: 'offset plus size past 2^64 must not wrap around into the start of the device',
    reason: 'area-outside-device',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ reservedSize: (1n << 64n) - 2n * MiB })); return p; },
  },
  {
    name: 'data size 2^53 + 4 KiB, past what a JSON number holds exactly',
    why: 'the data area would run far past the device',
    reason: 'area-outside-device',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ dataSize: (1n << 53n) + 4n * KiB })); return p; },
  },
  {
    name: 'data area moved back over the reserved area',
    why: 'guests would be handed the pages that hold Xen\'s page_info',
    reason: 'areas-overlap',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, (sb) => ({ dataOffset: sb.reservedOffset, dataSize: sb.dataSize + sb.reservedSize - 2n * MiB })); return p; },
  },
  {
    name: 'reserved area moved into the middle of the data area',
    why: 'Xen would overwrite guest data with its page_info',
    reason: 'areas-overlap',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ reservedOffset: 100n * MiB })); return p; },
  },
  // --- the partition table ------------------------------------------------------------------
  {
    name: 'the first 34 sectors wiped (no partition table)',
    why: 'without the table nothing keeps a later partition off the reserved area',
    reason: 'partition-table-missing',
    make: (c) => { const p = c.fresh('bound'); writeBytes(p, 0n, new Uint8Array(34 * 512)); return p; },
  },
  {
    name: 'an MBR instead of the GPT',
    why: 'an MBR cannot record the gaps that protect the reserved area',
    reason: 'partition-table-not-gpt',
    make: (c) => { const p = c.fresh('bound'); writeTable(p, 'label: dos\nstart=12288, size=507904, type=83\n'); return p; },
  },
  {
    name: 'the protective MBR turned into a hybrid one (type 0xee replaced by 0x83)',
    why: 'a hybrid MBR lets MBR-only tools see and move partitions the GPT does not know about',
    reason: 'partition-table-not-gpt',
    make: (c) => { const p = c.fresh('bound'); writeBytes(p, BigInt(MBR_PARTITION_TABLE_OFFSET + 4), Uint8Array.of(0x83)); return p; },
  },
  {
    name: 'the GPT header\'s disk GUID changed without resealing',
    why: 'a table that does not match its checksum may say anything',
    reason: 'partition-table-invalid',
    make: (c) => { const p = c.fresh('bound'); editGptHeader(p, (h) => { h.writeUInt8(h.readUInt8(GPT_HEADER.diskGuid) ^ 0xff, GPT_HEADER.diskGuid); }, false); return p; },
  },
  {
    name: 'a partition entry edited without updating the entry CRC',
    why: 'a table that does not match its checksum may say anything',
    reason: 'partition-table-invalid',
    make: (c) => { const p = c.fresh('bound'); editGptEntries(p, (e) => e.writeBigUInt64LE(4096n, 32), false); return p; },
  },
  {
    name: 'the GPT header (resealed) placing its backup at LBA 2^64 - 1',
    why: 'a table that points outside the device describes another device',
    reason: 'partition-table-invalid',
    make: (c) => { const p = c.fresh('bound'); editGptHeader(p, (h) => h.writeBigUInt64LE(U64_MAX, GPT_HEADER.alternateLba)); return p; },
  },
  {
    name: 'the GPT header (resealed) declaring 2^32 - 1 entries',
    why: 'a probe reads a bounded entry array; a larger one is refused, not read',
    reason: 'partition-table-invalid',
    make: (c) => { const p = c.fresh('bound'); editGptHeader(p, (h) => h.writeUInt32LE(0xffff_ffff, GPT_HEADER.entryCount)); return p; },
  },
  {
    name: 'a partition (resealed) whose last LBA comes before its first',
    why: 'an impossible partition makes every overlap check meaningless',
    reason: 'partition-table-invalid',
    make: (c) => {
      const p = c.fresh('bound');
      const data = lba(c.superblock('bound').dataOffset);
      editGptEntries(p, (e) => writeGptEntry(e, 128, 1, data + 100n, data + 50n));
      return p;
    },
  },
  {
    name: 'a partition (resealed) inside the reserved area without moving the first usable LBA',
    why: 'a partition outside the usable LBAs is one the table itself forbids',
    reason: 'partition-table-invalid',
    make: (c) => {
      const p = c.fresh('bound');
      const reserved = lba(c.superblock('bound').reservedOffset);
      editGptEntries(p, (e) => writeGptEntry(e, 128, 1, reserved, reserved + 2047n, LINUX_DATA_GUID));
      return p;
    },
  },
  {
    name: 'the GPT header (resealed) moving the backup table over the backup super block',
    why: 'a partitioning tool rewriting its backup table would destroy the copy',
    reason: 'superblock-overlaps-partition-table',
    make: (c) => { const p = c.fresh('bound'); editGptHeader(p, (h) => h.writeBigUInt64LE(lba(BACKUP) + 16n, GPT_HEADER.alternateLba)); return p; },
  },
  {
    name: 'reserved area moved to the end of the device, over the backup GPT header',
    why: 'Xen would overwrite the partition table with its page_info',
    reason: 'reserved-overlaps-partition-table',
    make: (c) => {
      const p = c.fresh('bound');
      rewriteSuperblocks(p, BOTH, (sb) => ({ reservedOffset: SIZE - sb.reservedSize, dataSize: SIZE - sb.reservedSize - sb.dataOffset }));
      return p;
    },
  },
  {
    name: 'data area running to the end of the device, over the backup GPT',
    why: 'a guest could overwrite the partition table',
    reason: 'data-overlaps-partition-table',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, (sb) => ({ dataSize: SIZE - sb.dataOffset })); return p; },
  },
  {
    name: 'data area at offset 0, over the MBR and primary GPT',
    why: 'a guest could overwrite the partition table',
    reason: 'data-overlaps-partition-table',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ dataOffset: 0n, dataSize: 2n * MiB })); return p; },
  },
  {
    name: 'reserved area over the backup super block',
    why: 'Xen would overwrite the copy that survives a wiped start of the device',
    reason: 'area-overlaps-superblock',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, (sb) => ({ reservedOffset: sb.dataOffset + sb.dataSize, reservedSize: MiB + 4n * KiB })); return p; },
  },
  {
    name: 'a partition added after setup over the primary super block (first usable LBA moved back)',
    why: 'whoever is given that partition could rewrite the super block',
    reason: 'superblock-inside-partition',
    make: (c) => { const p = c.fresh('bound'); repartition(p, (d) => d.replace(/^first-lba: \d+$/m, 'first-lba: 2048') + 'start=2048, size=2048\n'); return p; },
  },
  {
    name: 'a partition added after setup over the backup super block (last usable LBA moved on)',
    why: 'whoever is given that partition could rewrite the backup copy',
    reason: 'superblock-inside-partition',
    make: (c) => {
      const p = c.fresh('bound');
      const sb = c.superblock('bound');
      const dataEnd = lba(sb.dataOffset + sb.dataSize);
      const last = lba(BACKUP) + 15n;
      repartition(p, (d) => d.replace(/^last-lba: \d+$/m, `last-lba: ${last}`) + `start=${dataEnd}, size=${last - dataEnd + 1n}\n`);
      return p;
    },
  },
  {
    name: 'a partition added after setup inside the reserved area (first usable LBA moved back)',
    why: 'a guest given that partition would write into Xen\'s page_info',
    reason: 'reserved-overlaps-partition',
    make: (c) => {
      const p = c.fresh('bound');
      const reserved = lba(c.superblock('bound').reservedOffset);
      repartition(p, (d) => d.replace(/^first-lba: \d+$/m, 'first-lba: 2048') + `start=${reserved}, size=4096\n`);
      return p;
    },
  },
  {
    name: 'partition 1 grown backwards by 1 MiB into the reserved area',
    why: 'a guest given partition 1 would write into Xen\'s page_info',
    reason: 'reserved-overlaps-partition',
    make: (c) => {
      const p = c.fresh('bound');
      const sb = c.superblock('bound');
      const start = lba(sb.dataOffset);
      const size = lba(sb.dataSize);
      repartition(p, (d) => d
        .replace(/^first-lba: \d+$/m, 'first-lba: 2048')
        .replace(new RegExp(`start=\\s*${start}, size=\\s*${size}`), `start=${start - 2048n}, size=${size + 2048n}`));
      return p;
    },
  },
  {
    name: 'a partition added after setup in the gap between the data area and the backup copy',
    why: 'Xen was told that only the data area is for guests',
    reason: 'partition-outside-data-area',
    make: (c) => {
      const p = c.fresh('bound');
      const sb = c.superblock('bound');
      const dataEnd = lba(sb.dataOffset + sb.dataSize);
      const last = lba(BACKUP) - 1n;
      repartition(p, (d) => d.replace(/^last-lba: \d+$/m, `last-lba: ${last}`) + `start=${dataEnd}, size=${last - dataEnd + 1n}\n`);
      return p;
    },
  },
  {
    name: 'reserved area shrunk to 2 MiB, below Xen\'s rule 4 (2.5 MiB for 256 MiB)',
    why: 'Xen would run out of room for page_info and M2P entries',
    reason: 'reserved-too-small',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ reservedSize: 2n * MiB })); return p; },
  },
  {
    name: 'reserved area of exactly rule 4 (2.5 MiB), below the 44 bytes per page it records',
    why: 'rule 4 forgets the compat M2P; the recorded costs say the area is too small',
    reason: 'reserved-too-small',
    make: (c) => { const p = c.fresh('bound'); rewriteSuperblocks(p, BOTH, () => ({ reservedSize: 2n * MiB + 512n * KiB })); return p; },
  },
];

function blockEvent(sysname: string): DeviceEvent {
  return { action: 'change', subsystem: 'block', sysname, syspath: `/sys/devices/virtual/block/${sysname}`, devtype: 'disk' };
}

async function scanImage(path: string, namespaceUuid: string | null | undefined): Promise<Verdict> {
  const reader = await openDevice(path, 'read');
  try {
    return await scanDevice(reader, namespaceUuid === undefined ? {} : { namespaceUuid });
  } finally {
    await reader.close();
  }
}

interface InspectRun extends CliResult {
  json: InspectJson | null;
}

function withJson(result: CliResult): InspectRun {
  let json: InspectJson | null = null;
  try { json = JSON.parse(result.stdout) as InspectJson; } catch { json = null; }
  return { ...result, json };
}

/** `xen-pmem inspect PATH --json` through the CLI's entry point, output captured. */
async function inspectInProcess(path: string): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await main(['inspect', path, '--json'], {
    out: (text) => { stdout += text + '\n'; },
    err: (text) => { stderr += text + '\n'; },
    ask: async () => null,
    env: {},
    flock: processIO.flock,
    xencall: processIO.xencall,
  });
  return { code, stdout, stderr };
}

/** Runs `work` over `items` with at most `limit` at once (the CLI runs are child processes). */
async function eachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: limit }, async () => {
    while (next < items.length) await work(items[next++]!);
  });
  await Promise.all(lanes);
}

describe('hostile corpus: every case refused, with its own reason, and never reported', { skip }, () => {
  let host: DaemonHost;
  let controller: Controller;
  let log: RecordingLogger;
  const bases = new Map<Base, string>();
  const pristine = new Map<Base, Superblock>();
  const images = new Map<string, string>();
  const inspected = new Map<string, InspectRun>();
  const spawned = new Map<string, InspectRun>();
  let copies = 0;

  /** Points the fixture's /dev node at an image, as if that image were the device. */
  async function present(device: Device, image: string): Promise<void> {
    const node = host.devPath(device);
    await rm(node, { force: true });
    await symlink(image, node);
  }

  async function decide(device: Device): Promise<DeviceRecord> {
    await controller.handleEvent(blockEvent(device));
    const record = controller.status.snapshot().devices.find((each) => each.device === device);
    assert.ok(record, `the daemon recorded ${device}`);
    return record;
  }

  before(async () => {
    host = await makeDaemonHost('hostile', { regions: REGIONS });
    host.useXenInProcess();
    const dir = join(host.dir, 'images');
    await mkdir(dir);
    // The real setup path: planner, sfdisk and the super block writer, on the devices' own sizes.
    const setups: [Base, Device, string | null][] = [
      ['bound', 'pmem0', NS_A], ['bound-again', 'pmem0', NS_A], ['unbound', 'pmem0', null], ['big', 'pmem2', NS_C],
    ];
    for (const [base, device, namespaceUuid] of setups) {
      const prepared = await host.prepare(device, { namespaceUuid });
      bases.set(base, copySparseImage(prepared.devPath, join(dir, `${base}.img`)));
      pristine.set(base, prepared.superblock);
    }
    const corpus: Corpus = {
      fresh: (base) => copySparseImage(bases.get(base)!, join(dir, `case-${++copies}.img`)),
      superblock: (base) => pristine.get(base)!,
    };
    for (const c of CASES) images.set(c.name, c.make(corpus));
    // Sanity of the corpus itself: the bases are what setup writes, the copies where they belong.
    assert.equal(readSuperblockAt(bases.get('bound')!, PRIMARY).namespaceUuid, NS_A);
    assert.notEqual(pristine.get('bound')!.uuid, pristine.get('bound-again')!.uuid);

    // Every case through the CLI's own entry point in this process; every sixth also as the
    // real `xen-pmem` child process, which must print exactly the same (a process costs 0.3 s).
    const inspectable = CASES.filter((c) => c.inspect !== false);
    for (const c of inspectable) inspected.set(c.name, withJson(await inspectInProcess(images.get(c.name)!)));
    await eachLimited(inspectable.filter((_, index) => index % 6 === 0), 2, async (c) => {
      spawned.set(c.name, withJson(await runCliAsync(['inspect', images.get(c.name)!, '--json'])));
    });

    log = recordingLogger();
    controller = new Controller(testConfig(), host.ports({ log }), null);
    const capability = await host.openBridge().capability();
    // Nothing below is "not reported" merely because Xen could not take it.
    assert.equal(capability?.kind, 'xenpf-pmem', show(capability));
  });

  after(async () => {
    await controller?.stop();
    forgetXenInProcess();
    await host?.cleanup();
  });

  test(`the corpus has at least 40 cases, every one with a reason it must be refused (${CASES.length})`, () => {
    assert.ok(CASES.length >= 40, `${CASES.length} cases`);
    assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length, 'case names are unique');
    for (const c of CASES) assert.ok(c.why.length > 20, `${c.name} says why`);
  });

  for (const c of CASES) {
    const device = c.device ?? 'pmem0';
    test(`${c.reason}: ${c.name}`, async () => {
      const image = images.get(c.name)!;

      const verdict = await scanImage(image, NAMESPACE_OF[device]);
      assert.equal(verdict.status, 'invalid', `scanDevice: ${show(verdict)}`);
      const scanned = verdict as Extract<Verdict, { status: 'invalid' }>;
      assert.equal(scanned.reason, c.reason, `scanDevice: ${scanned.message}`);
      assert.ok(!scanned.message.includes('\n'), 'one sentence');

      if (c.inspect !== false) {
        const cli = inspected.get(c.name)!;
        assert.deepEqual(stackTraceLines(cli.stderr + cli.stdout), [], `no stack trace: ${cli.stderr}`);
        assert.ok(cli.json, `inspect --json printed JSON: ${cli.stdout}${cli.stderr}`);
        assert.equal(cli.code, 1, 'exit code 1: invalid');
        assert.equal(cli.json.status, 'invalid');
        assert.equal(cli.json.reason, c.reason);
        assert.equal(cli.json.message, scanned.message, 'inspect and the daemon\'s scan say the same');
        const child = spawned.get(c.name);
        if (child) {
          assert.deepEqual(stackTraceLines(child.stderr), [], child.stderr);
          assert.deepEqual([child.code, child.stdout], [cli.code, cli.stdout], 'the xen-pmem process prints the same');
        }
      }

      await present(device, image);
      const before = host.regionAdds().length;
      const record = await decide(device);
      assert.deepEqual([record.state, record.reason], ['rejected', c.reason], record.message);
      assert.ok(record.message.startsWith(`${device}: super block rejected [${c.reason}]: `), record.message);
      // The journal says it at error level when the reason first appears (repeats are debug).
      assert.ok(log.entries.some((entry) => entry.fields.device === device && entry.fields.reason === c.reason && entry.level === 'error'),
        'a rejected super block is an error in the journal');
      assert.equal(host.regionAdds().length, before, 'no pmem_add reached the hypervisor');
      assert.equal(host.regionAdds().length, 0);
    });
  }

  test('signatures shifted off their offsets (both copies 512 bytes late) are not found: absent, never reported', async () => {
    const image = copySparseImage(bases.get('bound')!, join(host.dir, 'images', 'shifted.img'));
    for (const at of BOTH) {
      const block = readBytes(image, at, SUPERBLOCK_BYTES);
      writeBytes(image, at, new Uint8Array(SUPERBLOCK_BYTES));
      writeBytes(image, at + 512n, block);
    }
    const verdict = await scanImage(image, NS_A);
    assert.equal(verdict.status, 'absent', show(verdict));
    await present('pmem0', image);
    const record = await decide('pmem0');
    assert.deepEqual([record.state, record.reason], ['absent', 'no-superblock']);
    assert.equal(host.regionAdds().length, 0);
  });

  test('positive control: the untouched image on the same rig is reported, exactly once', async () => {
    assert.equal(host.regionAdds().length, 0, 'nothing was reported before the control');
    const image = copySparseImage(bases.get('bound')!, join(host.dir, 'images', 'control.img'));
    await present('pmem0', image);
    const record = await decide('pmem0');
    assert.deepEqual([record.state, record.reason], ['reported', 'reported'], record.message);
    assert.deepEqual(host.regionAdds().map((call) => [call.spfn, call.result]), [[GiB4 >> 12n, 'OK']]);
    // A rescan says nothing new and sends nothing.
    await decide('pmem0');
    assert.equal(host.regionAdds().length, 1);
  });
});

describe('trust: the allow list by namespace UUID', { skip }, () => {
  let host: DaemonHost;
  const opened: string[] = [];

  before(async () => {
    host = await makeDaemonHost('trust', { regions: REGIONS });
    host.useXenInProcess();
    await host.prepare('pmem0', { namespaceUuid: NS_A });
    await host.prepare('pmem1', { namespaceUuid: NS_B });
    await host.prepare('pmem3', { namespaceUuid: null });
    // pmem2 (namespace C) carries a forged block that claims namespace A, the allowed one.
    await host.prepare('pmem2', { namespaceUuid: NS_C });
    rewriteSuperblocks(host.devPath('pmem2'), copyOffsets(2n * SIZE).both, () => ({ namespaceUuid: NS_A }));
  });
  after(async () => {
    forgetXenInProcess();
    await host?.cleanup();
  });

  function countingOpen(path: string): Promise<DeviceReader> {
    opened.push(path);
    return openDevice(path, 'read');
  }

  test('with allow.namespaces set, only that namespace is reported; the others are never even opened', async () => {
    const log = recordingLogger();
    const controller = new Controller(testConfig({ allow: { namespaces: [NS_A.toUpperCase()] } }), host.ports({ log, openReader: countingOpen }), null);
    try {
      await controller.start();
      const states = Object.fromEntries(controller.status.snapshot().devices.map((each) => [each.device, [each.state, each.reason]]));
      assert.deepEqual(states, {
        pmem0: ['reported', 'reported'],
        pmem1: ['rejected', 'not-allowed'],
        // A forged block naming the allowed namespace changes nothing: the UUID that counts is
        // the one the kernel gives the namespace, read from sysfs before the device is opened.
        pmem2: ['rejected', 'not-allowed'],
        pmem3: ['rejected', 'not-allowed'],
      });
      assert.deepEqual(opened, [host.devPath('pmem0')], 'devices outside the allow list are not read');
      assert.deepEqual(host.regionAdds().map((call) => [call.spfn, call.result]), [[GiB4 >> 12n, 'OK']]);
      const notice = log.entries.find((entry) => entry.fields.device === 'pmem1');
      assert.equal(notice?.level, 'notice');
      assert.match(notice?.message ?? '', new RegExp(`not in the config's allow list \\(namespace ${NS_B}, region1, pmem1\\)`));
    } finally {
      await controller.stop();
    }
  });

  test('deny wins over allow: an allowed namespace that is also denied is not reported', async () => {
    const controller = new Controller(testConfig({ allow: { namespaces: [NS_B] }, deny: { devices: ['pmem1'] } }), host.ports({ log: recordingLogger() }), null);
    try {
      await controller.start();
      const record = controller.status.snapshot().devices.find((each) => each.device === 'pmem1');
      assert.deepEqual([record?.state, record?.reason], ['rejected', 'not-allowed']);
      assert.match(record?.message ?? '', /denied by config \(deny\.devices: pmem1\)/);
      assert.equal(host.regionAdds().filter((call) => call.spfn === (GiB4 + SIZE) >> 12n).length, 0);
    } finally {
      await controller.stop();
    }
  });

  test('without an allow list, the forged binding is caught by the namespace check instead', async () => {
    const verdict = await scanImage(host.devPath('pmem2'), NS_C);
    assert.equal(verdict.status, 'invalid');
    assert.equal((verdict as Extract<Verdict, { status: 'invalid' }>).reason, 'namespace-mismatch');
  });
});
