// Layouts built in memory the way setup builds them: the real planner and the real super block
// writer, plus the GPT that sfdisk writes for the plan (test/gpt.test.ts checks that sfdisk really
// writes these numbers), so validator tests need no disk.

import type { GptTable } from '../../src/core/gpt.js';
import { LINUX_DATA_TYPE_GUID, planLayout, type LayoutPlan, type PartitionRequest } from '../../src/core/planner.js';
import { encodeSuperblock, FLAG_BACKUP_COPY, type Superblock } from '../../src/core/superblock.js';
import type { ProbeInput } from '../../src/core/validate.js';
import { superblockFor } from '../../src/io/layout-writer.js';

export const RESERVATION_UUID = '6f1d2c3b-4a59-4e68-9d7c-8b9a0f1e2d3c';
export const NAMESPACE_UUID = 'a1b2c3d4-e5f6-4718-8293-a4b5c6d7e8f9';
export const CREATED_AT = 1_795_000_000n;

/** sfdisk's defaults for a new GPT on 512-byte sectors: 128 entries of 128 bytes at LBA 2. */
export const SFDISK_ENTRY_COUNT = 128;
export const SFDISK_ENTRY_BYTES = 128;

export function planFor(deviceSize: bigint, requests: PartitionRequest[] = []): LayoutPlan {
  const planned = planLayout(deviceSize, requests);
  if (!planned.ok) throw new Error(`fixture does not plan: ${planned.message}`);
  return planned.plan;
}

/** The GPT sfdisk writes for `plan`'s script, as parseGptEntries returns it. */
export function gptTableFor(plan: LayoutPlan): GptTable {
  const sector = BigInt(plan.sectorSize);
  const entriesBytes = SFDISK_ENTRY_COUNT * SFDISK_ENTRY_BYTES;
  return {
    sectorSize: plan.sectorSize,
    alternateLba: plan.deviceSize / sector - 1n,
    firstUsableByte: plan.dataOffset,
    usableEndByte: plan.dataOffset + plan.dataSize,
    entriesOffset: 2n * sector,
    entriesBytes,
    entryCount: SFDISK_ENTRY_COUNT,
    entrySize: SFDISK_ENTRY_BYTES,
    entriesCrc: 0,
    diskGuid: '11111111-2222-4333-8444-555555555555',
    partitions: plan.partitions.map((p) => ({
      number: p.number, start: p.start, size: p.size,
      typeGuid: LINUX_DATA_TYPE_GUID.toLowerCase(), name: `xen-pmem-data-${p.number}`,
    })),
  };
}

export function superblockForPlan(plan: LayoutPlan, namespaceUuid: string | null = null): Superblock {
  return superblockFor(plan, { uuid: RESERVATION_UUID, createdAt: CREATED_AT, namespaceUuid });
}

/** The two encoded copies setup writes: the backup differs only by its flag. */
export function encodeCopies(sb: Superblock): { primary: Buffer; backup: Buffer } {
  return {
    primary: encodeSuperblock({ ...sb, flags: sb.flags & ~FLAG_BACKUP_COPY }),
    backup: encodeSuperblock({ ...sb, flags: sb.flags | FLAG_BACKUP_COPY }),
  };
}

export interface Fixture {
  plan: LayoutPlan;
  superblock: Superblock;
  table: GptTable;
  input: ProbeInput;
}

/** A valid, freshly set-up device of `deviceSize` bytes, as judge sees it. */
export function freshDevice(deviceSize: bigint, options: { requests?: PartitionRequest[]; namespaceUuid?: string | null } = {}): Fixture {
  const plan = planFor(deviceSize, options.requests);
  const superblock = superblockForPlan(plan, options.namespaceUuid ?? null);
  const table = gptTableFor(plan);
  const copies = encodeCopies(superblock);
  return {
    plan, superblock, table,
    input: { deviceSize, table: { kind: 'gpt', table }, primary: copies.primary, backup: copies.backup },
  };
}

/** The same device with both copies re-encoded from `change` (checksums correct). */
export function withBothCopies(fixture: Fixture, change: Partial<Superblock>): ProbeInput {
  const copies = encodeCopies({ ...fixture.superblock, ...change });
  return { ...fixture.input, primary: copies.primary, backup: copies.backup };
}
