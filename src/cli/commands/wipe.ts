import { parseArgs } from 'node:util';
import { backupOffsetFor, hasSignature, PRIMARY_OFFSET, SUPERBLOCK_BYTES } from '../../core/superblock.js';
import { hex } from '../../core/units.js';
import { openDevice } from '../../io/device.js';
import type { DeviceLock } from '../../io/lock.js';
import { CommandError, EXIT_OK, type Command } from '../command.js';
import { deviceArgument } from './arguments.js';
import { lockForWriting } from './locking.js';

export const wipeCommand: Command = {
  name: 'wipe',
  summary: 'remove the super block and its backup (partitions stay)',
  help: `Usage: xen-pmem wipe DEVICE [--yes]

Zeroes the xen-pmem super block and its backup on DEVICE, so the daemon no longer
reports it to Xen. Only blocks that carry the xen-pmem signature are touched; the
partition table and the partitions are left alone. The copies are zeroed under an
exclusive lock (flock) on the whole disk, as udev and util-linux expect.

  --yes    do not ask for confirmation (required when not on a terminal)
  --help   this text

Exit codes: 0 wiped (or nothing to wipe), 2 usage or I/O error.`,

  async run(args, io) {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { yes: { type: 'boolean' } } });
    const path = deviceArgument(positionals);
    const device = await openDevice(path, 'write');
    let lock: DeviceLock | null = null;
    try {
      const copies = [PRIMARY_OFFSET, backupOffsetFor(device.size)];
      const present: bigint[] = [];
      for (const offset of copies) {
        if (hasSignature(await device.read(offset, SUPERBLOCK_BYTES))) present.push(offset);
      }
      if (present.length === 0) {
        io.out(`${path}: no xen-pmem super block to wipe`);
        return EXIT_OK;
      }
      const where = present.map(hex).join(' and ');
      if (!values.yes) {
        const answer = await io.ask(`Wipe the xen-pmem super block at ${where} on ${path}? [y/N] `);
        if (answer === null) throw new CommandError('not on a terminal: pass --yes to wipe without asking');
        if (!/^y(es)?$/i.test(answer.trim())) {
          io.out('Nothing was wiped.');
          return EXIT_OK;
        }
      }
      // Locked only from here: a question to a person must not hold udev and the daemon off.
      // What to zero is read again under the lock, which is what counts.
      lock = await lockForWriting(path, io);
      const zeros = Buffer.alloc(SUPERBLOCK_BYTES);
      const wiped: bigint[] = [];
      for (const offset of copies) {
        if (!hasSignature(await device.read(offset, SUPERBLOCK_BYTES))) continue;
        await device.write(offset, zeros);
        wiped.push(offset);
      }
      await device.sync();
      io.out(wiped.length === 0
        ? `${path}: no xen-pmem super block to wipe`
        : `${path}: wiped the xen-pmem super block at ${wiped.map(hex).join(' and ')}; partitions were left alone`);
      return EXIT_OK;
    } finally {
      await device.close();
      await lock?.release();
    }
  },
};
