// NVDIMM images for the daemon scenarios and the demo, made on the host before a boot: blank
// sparse files, files prepared by the real `xen-pmem setup` (the built CLI, as an operator runs it
// against an image), and prepared files with a damaged super block byte. Also where QEMU put each
// NVDIMM in the guest's physical address space, asked over QMP: the ground truth the daemon's
// physical ranges are checked against.

import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import { FIELDS, PRIMARY_OFFSET, backupOffsetFor } from '../src/core/superblock.js';
import { hex } from '../src/core/units.js';
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
