// The layout planner: from a device size and the partitions asked for, where everything goes.
//
//   | GPT | gap, primary super block at 1 MiB | reserved for Xen | data: partitions | gap, backup super block | backup GPT |
//   0     17 KiB                              2 MiB             2 MiB-aligned       2 MiB-aligned end          end
//
// The GPT's own "first usable LBA" and "last usable LBA" are set to the data area's bounds, so any
// partitioning tool run later refuses to put a partition over the reserved area or a super block
// copy: the partition table itself records the gaps.

import { BACKUP_DISTANCE_FROM_END, backupOffsetFor, PRIMARY_OFFSET } from './superblock.js';
import { alignDown, alignUp, hex, HUGE_PAGE_BYTES, humanSize, isAligned, PAGE_BYTES } from './units.js';
import { plannedReservedBytes, xenMinimumReservedPages, XEN_X86_64_COSTS, type PerPageCosts } from './xen-sizing.js';

/** Xen maps the region in 2 MiB superpages; the reserved area starts on one. */
export const RESERVED_OFFSET_BYTES = 2n * 1024n * 1024n;

export type PartitionRequest = { size: bigint } | { size: 'rest' };

export interface PlannedPartition {
  number: number;
  start: bigint;
  size: bigint;
}

export interface LayoutPlan {
  deviceSize: bigint;
  sectorSize: number;
  costs: PerPageCosts;
  primaryOffset: bigint;
  backupOffset: bigint;
  reservedOffset: bigint;
  reservedSize: bigint;
  /** The hypervisor's own minimum for this device (rule 4), for display and tests. */
  xenMinimumBytes: bigint;
  dataOffset: bigint;
  dataSize: bigint;
  partitions: PlannedPartition[];
}

export type PlanResult =
  | { ok: true; plan: LayoutPlan }
  | { ok: false; reason: PlanFailure; message: string };

export type PlanFailure =
  | 'device-size-unaligned'
  | 'device-too-small'
  | 'bad-sector-size'
  | 'bad-partition-request'
  | 'partitions-do-not-fit';

export function planLayout(
  deviceSize: bigint,
  requests: PartitionRequest[],
  sectorSize = 512,
  costs: PerPageCosts = XEN_X86_64_COSTS,
): PlanResult {
  if (sectorSize !== 512 && sectorSize !== 4096) {
    return fail('bad-sector-size', `logical sector size ${sectorSize} is not 512 or 4096`);
  }
  if (!isAligned(deviceSize, PAGE_BYTES)) {
    return fail('device-size-unaligned',
      `device size ${deviceSize} (${hex(deviceSize)}) is not a multiple of 4 KiB, so it cannot be mapped in whole pages`);
  }
  const totalPages = deviceSize / PAGE_BYTES;
  const reservedSize = plannedReservedBytes(totalPages, costs);
  const dataOffset = RESERVED_OFFSET_BYTES + reservedSize;
  const backupOffset = backupOffsetFor(deviceSize);
  const dataEnd = alignDown(backupOffset, HUGE_PAGE_BYTES);
  if (dataEnd <= dataOffset) {
    // One 2 MiB data chunk after the reserved area, then the backup copy's distance from the end.
    const needed = dataOffset + HUGE_PAGE_BYTES + BACKUP_DISTANCE_FROM_END;
    return fail('device-too-small',
      `a device of ${deviceSize} bytes (${humanSize(deviceSize)}) leaves no data area after ${humanSize(reservedSize)} reserved for Xen; at least ${needed} bytes (${humanSize(needed)}) are needed`);
  }
  const partitions = placePartitions(requests.length > 0 ? requests : [{ size: 'rest' }], dataOffset, dataEnd);
  if (!Array.isArray(partitions)) return partitions;
  return {
    ok: true,
    plan: {
      deviceSize,
      sectorSize,
      costs,
      primaryOffset: PRIMARY_OFFSET,
      backupOffset,
      reservedOffset: RESERVED_OFFSET_BYTES,
      reservedSize,
      xenMinimumBytes: xenMinimumReservedPages(totalPages) * PAGE_BYTES,
      dataOffset,
      dataSize: dataEnd - dataOffset,
      partitions,
    },
  };
}

/**
 * Partitions start on 2 MiB boundaries (so a guest can map them with superpages) and sizes are
 * whole 4 KiB pages. "rest" takes what is left and must come last.
 */
function placePartitions(requests: PartitionRequest[], dataOffset: bigint, dataEnd: bigint): PlannedPartition[] | PlanResult {
  const placed: PlannedPartition[] = [];
  let cursor = dataOffset;
  for (const [index, request] of requests.entries()) {
    const number = index + 1;
    const start = alignUp(cursor, HUGE_PAGE_BYTES);
    let size: bigint;
    if (request.size === 'rest') {
      if (index !== requests.length - 1) {
        return fail('bad-partition-request', `partition ${number} asks for "rest" but is not the last one`);
      }
      size = dataEnd - start;
    } else {
      if (request.size <= 0n) return fail('bad-partition-request', `partition ${number} asks for ${request.size} bytes`);
      size = alignUp(request.size, PAGE_BYTES);
    }
    if (size <= 0n || start + size > dataEnd) {
      const available = dataEnd > start ? dataEnd - start : 0n;
      return fail('partitions-do-not-fit',
        `partition ${number} needs ${humanSize(size > 0n ? size : 0n)} from ${hex(start)} but only ${humanSize(available)} of the data area (${hex(dataOffset)}-${hex(dataEnd - 1n)}) is left`);
    }
    placed.push({ number, start, size });
    cursor = start + size;
  }
  return placed;
}

/** The sfdisk script that writes the planned GPT; sfdisk, not this tool, encodes the table. */
export function sfdiskScript(plan: LayoutPlan): string {
  const sector = BigInt(plan.sectorSize);
  const lines = [
    'label: gpt',
    'unit: sectors',
    `sector-size: ${plan.sectorSize}`,
    `first-lba: ${plan.dataOffset / sector}`,
    `last-lba: ${(plan.dataOffset + plan.dataSize) / sector - 1n}`,
  ];
  for (const partition of plan.partitions) {
    lines.push(`start=${partition.start / sector}, size=${partition.size / sector}, type=${LINUX_DATA_TYPE_GUID}, name="xen-pmem-data-${partition.number}"`);
  }
  return lines.join('\n') + '\n';
}

/** "Linux filesystem data": guests format these partitions as they like. */
export const LINUX_DATA_TYPE_GUID = '0FC63DAF-8483-4772-8E79-3D69D8477DE4';

function fail(reason: PlanFailure, message: string): PlanResult {
  return { ok: false, reason, message };
}
