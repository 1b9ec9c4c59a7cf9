import { parseArgs } from 'node:util';
import { planLayout, type PartitionRequest } from '../../core/planner.js';
import { hasSignature, PRIMARY_OFFSET, SUPERBLOCK_BYTES, backupOffsetFor } from '../../core/superblock.js';
import { parseSize } from '../../core/units.js';
import { openDevice } from '../../io/device.js';
import type { DeviceReader } from '../../io/ports.js';
import { writeLayout } from '../../io/layout-writer.js';
import { foreignSignatures } from '../../io/tools.js';
import { CommandError, EXIT_NOT_VALID, EXIT_OK, EXIT_USAGE_OR_IO, type Command } from '../command.js';
import { describePlan, describeVerdict } from '../../format/serializers.js';
import { deviceArgument } from './arguments.js';
import { lockForWriting } from './locking.js';

export const setupCommand: Command = {
  name: 'setup',
  summary: 'write a partition table, super block and Xen reserved area to a pmem device',
  help: `Usage: xen-pmem setup DEVICE [--partition SIZE]... [--dry-run] [--force]

Prepares DEVICE (a pmem block device such as /dev/pmem0, or an image file) for Xen:
a GPT written by sfdisk, a super block at 1 MiB with a backup near the end, an area
reserved for Xen's page_info and M2P tables starting at 2 MiB, and data partitions.
While it writes, setup holds an exclusive lock (flock) on the whole disk, as udev and
util-linux expect, so that neither udev nor xen-pmemd reads half a layout.

  --partition SIZE  a data partition of SIZE (e.g. 10G, 512M) or "rest"; repeatable,
                    in order. Default: one partition filling the data area.
  --dry-run         print the layout and write nothing
  --force           overwrite a device that already has a partition table,
                    a filesystem or a super block (all data on it is lost)
  --help            this text

Exit codes: 0 written and verified, 1 written but not valid on re-read, 2 usage or I/O error.`,

  async run(args, io) {
    const { values, positionals } = parseArgs({
      args, allowPositionals: true,
      options: {
        partition: { type: 'string', multiple: true },
        'dry-run': { type: 'boolean' },
        force: { type: 'boolean' },
      },
    });
    const path = deviceArgument(positionals);
    const requests = (values.partition ?? []).map(parsePartition);

    const device = await openDevice(path, 'read');
    let existing: string[];
    try {
      const planned = planLayout(device.size, requests, device.sectorSize);
      if (!planned.ok) throw new CommandError(`cannot lay out ${path}: ${planned.message}`);
      io.out(describePlan(path, planned.plan));
      if (values['dry-run']) {
        io.out('Dry run: nothing was written.');
        return EXIT_OK;
      }
      // From the look at what is there to the read-back of what was written, the disk is locked:
      // udev postpones its probe and the daemon its read, so neither sees half a layout.
      const lock = await lockForWriting(path, io);
      try {
        existing = await existingContent(path, device);
        if (existing.length > 0 && !values.force) {
          throw new CommandError(`${path} is not blank (${existing.join(', ')}); use --force to overwrite it and lose its data`);
        }
        await device.close();
        const written = await writeLayout(path, planned.plan);
        io.out(`Wrote the partition table, super block ${written.superblock.uuid} and its backup.`);
        io.out(describeVerdict(path, device.size, written.verdict));
        if (written.verdict.status !== 'valid' || written.verdict.superblock.uuid !== written.superblock.uuid) {
          io.err(`xen-pmem: ${path} does not read back as the layout just written`);
          return EXIT_NOT_VALID;
        }
        return EXIT_OK;
      } finally {
        await lock.release();
      }
    } finally {
      await device.close().catch(() => undefined);
    }
  },
};

function parsePartition(text: string): PartitionRequest {
  if (text === 'rest') return { size: 'rest' };
  const size = parseSize(text);
  if (size === null || size === 0n) {
    throw new CommandError(`--partition ${text}: expected a size such as 10G, 512M or 4096, or "rest"`, EXIT_USAGE_OR_IO);
  }
  return { size };
}

/** Anything on the device that setup would destroy: foreign signatures and our own super blocks. */
async function existingContent(path: string, device: DeviceReader): Promise<string[]> {
  const found = await foreignSignatures(path);
  const primary = await device.read(PRIMARY_OFFSET, SUPERBLOCK_BYTES);
  const backup = await device.read(backupOffsetFor(device.size), SUPERBLOCK_BYTES);
  if (hasSignature(primary) || hasSignature(backup)) found.push('a xen-pmem super block');
  return found;
}
