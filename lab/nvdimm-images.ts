// NVDIMM images for the daemon scenarios and the demo, made on the host before a boot: blank
// sparse files, files prepared by the real `xen-pmem setup` (the built CLI, as an operator runs it
// against an image), and prepared files with a damaged super block byte. Also where QEMU put each
// NVDIMM in the guest's physical address space, asked over QMP: the ground truth the daemon's
// physical ranges are checked against.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, mkdirSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import { FIELDS, PRIMARY_OFFSET, SUPERBLOCK_BYTES, backupOffsetFor, decodeSuperblock, encodeSuperblock } from '../src/core/superblock.js';
import { hex, PAGE_BYTES } from '../src/core/units.js';
import type { SuperblockOffsets } from './guest/daemon-results.js';
import { LabError } from './errors.js';
import { repositoryDir } from './prepare.js';
import type { QmpClient } from './qmp.js';

export const CLI = join(repositoryDir(), 'dist', 'src', 'cli', 'xen-pmem.js');

export interface CliRun {
  command: string;
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built `xen-pmem` on the host. */
export function runXenPmem(args: string[]): CliRun {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { command: `xen-pmem ${args.join(' ')}`, code: result.status ?? -1, stdout: result.stdout ?? '', stderr: (result.stderr ?? '') + (result.error?.message ?? '') };
}

/** Creates (or empties) a sparse image of `sizeBytes`. */
export function blankImage(path: string, sizeBytes: bigint): string {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, Number(sizeBytes));
  } finally {
    closeSync(fd);
  }
  return path;
}

/** `xen-pmem inspect IMAGE --json`, parsed. */
export interface InspectJson {
  status: 'valid' | 'absent' | 'invalid';
  reason?: string;
  message?: string;
  source?: string;
  notes?: string[];
  superblock?: SuperblockOffsets;
}

export function inspectImage(path: string): InspectJson {
  const run = runXenPmem(['inspect', path, '--json']);
  try {
    return JSON.parse(run.stdout) as InspectJson;
  } catch {
    throw new LabError('bad-options', `${run.command} printed no JSON (exit ${run.code}): ${run.stderr.trim()}`);
  }
}

/** A blank image prepared with `xen-pmem setup`; returns the super block's offsets. */
export function preparedImage(path: string, sizeBytes: bigint): SuperblockOffsets {
  blankImage(path, sizeBytes);
  const setup = runXenPmem(['setup', path]);
  if (setup.code !== 0) throw new LabError('bad-options', `${setup.command} failed (exit ${setup.code}): ${setup.stderr.trim()}`);
  const inspected = inspectImage(path);
  if (inspected.status !== 'valid' || !inspected.superblock) {
    throw new LabError('bad-options', `${path} does not inspect as valid right after setup: ${JSON.stringify(inspected)}`);
  }
  return inspected.superblock;
}

/**
 * Inverts one byte of a super block copy (inside the writer text, which only the checksum
 * covers), so the copy fails its checksum and nothing else. Returns the byte's offset.
 */
export function damageSuperblockCopy(path: string, sizeBytes: bigint, copy: 'primary' | 'backup'): bigint {
  const offset = (copy === 'primary' ? PRIMARY_OFFSET : backupOffsetFor(sizeBytes)) + BigInt(FIELDS.writer.offset + 2);
  const fd = openSync(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, Number(offset));
    byte[0] = byte[0]! ^ 0xff;
    writeSync(fd, byte, 0, 1, Number(offset));
  } finally {
    closeSync(fd);
  }
  return offset;
}

export interface PlacedNvdimm {
  id: string;
  /** Guest physical address of the DIMM's first byte, hex. */
  address: string;
  sizeBytes: string;
}

/** `query-memory-devices`: where QEMU placed each NVDIMM. */
export async function nvdimmPlacement(qmp: QmpClient): Promise<PlacedNvdimm[]> {
  const devices = await qmp.execute<Array<{ type: string; data: { id?: string; addr: number; size: number } }>>('query-memory-devices');
  return devices
    .filter((device) => device.type === 'nvdimm')
    .map((device) => ({ id: device.data.id ?? '?', address: hex(BigInt(device.data.addr)), sizeBytes: String(device.data.size) }));
}

/**
 * A prepared image whose reserved area is cut to `reservedBytes` (both super block copies
 * rewritten; partitions and data area as `xen-pmem setup` made them). The lab uses it for a layout
 * an older planner would have made: 44 bytes a page rounded up to 2 MiB, 4 MiB for 256 MiB.
 */
export function shrunkReservedImage(path: string, sizeBytes: bigint, reservedBytes: bigint): SuperblockOffsets {
  preparedImage(path, sizeBytes);
  const fd = openSync(path, 'r+');
  try {
    for (const offset of [PRIMARY_OFFSET, backupOffsetFor(sizeBytes)]) {
      const block = Buffer.alloc(SUPERBLOCK_BYTES);
      readSync(fd, block, 0, SUPERBLOCK_BYTES, Number(offset));
      const decoded = decodeSuperblock(block);
      if (decoded.kind !== 'ok') throw new LabError('bad-options', `${path}: the super block at ${hex(offset)} did not decode after setup`);
      writeSync(fd, encodeSuperblock({ ...decoded.superblock, reservedSize: reservedBytes }), 0, SUPERBLOCK_BYTES, Number(offset));
    }
  } finally {
    closeSync(fd);
  }
  const inspected = inspectImage(path);
  if (inspected.status !== 'valid' || !inspected.superblock) {
    throw new LabError('bad-options', `${path} does not inspect as valid with a reserved area of ${reservedBytes} bytes: ${JSON.stringify(inspected)}`);
  }
  return inspected.superblock;
}

/** What the planner of xen-pmem 0.1.0 reserved: 44 bytes a page, rounded up to 2 MiB. */
export function perPageReservedBytes(sizeBytes: bigint): bigint {
  const bytes = (sizeBytes / PAGE_BYTES) * 44n;
  const chunk = 2n * 1024n * 1024n;
  return ((bytes + chunk - 1n) / chunk) * chunk;
}

/** Partition 1 of an image, as sfdisk reads its GPT: byte offset and size. */
export function firstPartition(path: string): { start: bigint; size: bigint } {
  const run = spawnSync('sfdisk', ['--json', path], { encoding: 'utf8', timeout: 60_000 });
  const table = JSON.parse(run.stdout || '{}') as { partitiontable?: { sectorsize?: number; partitions?: { start: number; size: number }[] } };
  const first = table.partitiontable?.partitions?.[0];
  if (!first) throw new LabError('bad-options', `sfdisk finds no partition in ${path}: ${run.stderr.trim()}`);
  const sector = BigInt(table.partitiontable?.sectorsize ?? 512);
  return { start: BigInt(first.start) * sector, size: BigInt(first.size) * sector };
}

/**
 * An ext4 file system on partition 1 of a prepared image, holding `files` (name → content):
 * mke2fs writes it straight into the image at the partition's offset and fills it from a
 * directory, so no loop device or mount is needed on the host.
 */
export function filesystemOnData(path: string, files: Record<string, string>, scratchDir: string): { start: bigint; size: bigint } {
  const partition = firstPartition(path);
  const source = join(scratchDir, 'fs-content');
  mkdirSync(source, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(source, name), content);
  const run = spawnSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', 'xen-pmem-lab', '-E', `offset=${partition.start}`, '-d', source, path, `${partition.size / 1024n}k`], {
    encoding: 'utf8', timeout: 120_000,
  });
  if (run.status !== 0) throw new LabError('bad-options', `mke2fs on partition 1 of ${path} failed (exit ${run.status}): ${(run.stderr ?? '').trim()}`);
  return partition;
}

/**
 * sha256 of every part of a prepared image that Xen and the Dom0 must leave alone: both GPTs,
 * both super block copies and the whole data area. The reserved area is Xen's and not included.
 */
export function layoutChecksums(path: string, offsets: SuperblockOffsets, sizeBytes: bigint): Record<string, string> {
  const sector = 512n;
  const parts: Record<string, [bigint, bigint]> = {
    'primary GPT': [0n, 34n * sector],
    'backup GPT': [sizeBytes - 33n * sector, 33n * sector],
    'primary super block': [PRIMARY_OFFSET, BigInt(SUPERBLOCK_BYTES)],
    'backup super block': [backupOffsetFor(sizeBytes), BigInt(SUPERBLOCK_BYTES)],
    'data area': [BigInt(offsets.dataOffset), BigInt(offsets.dataSize)],
  };
  const fd = openSync(path, 'r');
  try {
    const sums: Record<string, string> = {};
    for (const [name, [start, length]] of Object.entries(parts)) {
      const hash = createHash('sha256');
      const chunk = Buffer.alloc(1024 * 1024);
      for (let done = 0n; done < length;) {
        const want = Number(length - done < BigInt(chunk.length) ? length - done : BigInt(chunk.length));
        const got = readSync(fd, chunk, 0, want, Number(start + done));
        if (got <= 0) throw new LabError('bad-options', `${path} ends inside its ${name}`);
        hash.update(chunk.subarray(0, got));
        done += BigInt(got);
      }
      sums[name] = hash.digest('hex');
    }
    return sums;
  } finally {
    closeSync(fd);
  }
}

/** `length` bytes of an image file from `offset` (what the guest or Xen left there). */
export function readImageBytes(path: string, offset: bigint, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const bytes = Buffer.alloc(length);
    readSync(fd, bytes, 0, length, Number(offset));
    return bytes;
  } finally {
    closeSync(fd);
  }
}
