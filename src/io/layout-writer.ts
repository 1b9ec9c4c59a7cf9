// Writes a planned layout: sfdisk writes the GPT, then this module writes the backup super block
// and then the primary, syncs, and reads everything back through the same scan the daemon uses.
// The reserved area is not zeroed: Xen initialises what it uses, and a 1 TiB setup stays instant.

import { randomUUID } from 'node:crypto';
import type { LayoutPlan } from '../core/planner.js';
import { sfdiskScript } from '../core/planner.js';
import {
  encodeSuperblock, FLAG_BACKUP_COPY, FLAG_NAMESPACE_BOUND, MAJOR_VERSION, MINOR_VERSION, type Superblock,
} from '../core/superblock.js';
import type { Verdict } from '../core/validate.js';
import { WRITER } from '../version.js';
import { openDevice } from './device.js';
import { scanDevice } from './scan.js';
import { writePartitionTable } from './tools.js';

export interface WriteOptions {
  namespaceUuid?: string | null;
  /** Fixed values for reproducible test images; normally random and now. */
  uuid?: string;
  createdAt?: bigint;
}

export function superblockFor(plan: LayoutPlan, options: WriteOptions = {}): Superblock {
  const bound = options.namespaceUuid != null;
  return {
    majorVersion: MAJOR_VERSION,
    minorVersion: MINOR_VERSION,
    flags: bound ? FLAG_NAMESPACE_BOUND : 0,
    uuid: options.uuid ?? randomUUID(),
    namespaceUuid: bound ? options.namespaceUuid! : null,
    deviceSize: plan.deviceSize,
    reservedOffset: plan.reservedOffset,
    reservedSize: plan.reservedSize,
    dataOffset: plan.dataOffset,
    dataSize: plan.dataSize,
    primaryOffset: plan.primaryOffset,
    backupOffset: plan.backupOffset,
    createdAt: options.createdAt ?? BigInt(Math.floor(Date.now() / 1000)),
    pageSize: plan.costs.pageSize,
    pageInfoBytes: plan.costs.pageInfoBytes,
    m2pBytes: plan.costs.m2pBytes,
    compatM2pBytes: plan.costs.compatM2pBytes,
    writer: WRITER,
  };
}

export interface WrittenLayout {
  superblock: Superblock;
  verdict: Verdict;
}

export async function writeLayout(path: string, plan: LayoutPlan, options: WriteOptions = {}): Promise<WrittenLayout> {
  await writePartitionTable(path, sfdiskScript(plan));
  const superblock = superblockFor(plan, options);
  const device = await openDevice(path, 'write');
  try {
    // Backup first: if the machine dies in between, the old primary and the new backup disagree
    // and the device is refused, rather than half a layout being trusted.
    await device.write(plan.backupOffset, encodeSuperblock({ ...superblock, flags: superblock.flags | FLAG_BACKUP_COPY }));
    await device.write(plan.primaryOffset, encodeSuperblock(superblock));
    await device.sync();
  } finally {
    await device.close();
  }
  const reader = await openDevice(path, 'read');
  try {
    const verdict = await scanDevice(reader, options.namespaceUuid !== undefined ? { namespaceUuid: options.namespaceUuid } : {});
    return { superblock, verdict };
  } finally {
    await reader.close();
  }
}
