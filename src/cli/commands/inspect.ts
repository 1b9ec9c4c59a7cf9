import { parseArgs } from 'node:util';
import { toSafeNumber } from '../../core/units.js';
import { openDevice } from '../../io/device.js';
import { scanDevice } from '../../io/scan.js';
import { EXIT_NOT_VALID, EXIT_OK, type Command } from '../command.js';
import { describeVerdict, verdictToJson } from '../report.js';
import { deviceArgument } from './arguments.js';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'find and validate the super block of a device',
  help: `Usage: xen-pmem inspect DEVICE [--json]

Reads the partition table and both super block copies of DEVICE (about 25 KiB,
whatever its size) and says whether the layout is valid for this device, and why not.

  --json   one JSON object: device, size, status (valid|absent|invalid), reason,
           message, superblock, partitions (sizes and offsets in bytes)
  --help   this text

Exit codes: 0 valid, 1 absent or invalid, 2 usage or I/O error.`,

  async run(args, io) {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
    const path = deviceArgument(positionals);
    const device = await openDevice(path, 'read');
    try {
      const verdict = await scanDevice(device);
      if (values.json) {
        io.out(JSON.stringify({ device: path, size: toSafeNumber(device.size), ...verdictToJson(verdict) }));
      } else {
        io.out(describeVerdict(path, device.size, verdict));
      }
      return verdict.status === 'valid' ? EXIT_OK : EXIT_NOT_VALID;
    } finally {
      await device.close();
    }
  },
};
